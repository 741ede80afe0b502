"""``benchmarks/speed.py`` times the network a protocol and ``--model-options`` describe."""

import json
import subprocess
import sys
from pathlib import Path

from h2aseg.models.registry import build_model

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"


def _run_speed(*args: str) -> subprocess.CompletedProcess:
    """speed.py on H2ASeg at 32³, one timed step, with ``args``; fails the test if it exits non-zero."""
    command = [sys.executable, str(SCRIPT), "--model", "h2aseg", "--patches", "32,32,32", "--warmup", "0"]
    return subprocess.run([*command, "--repeats", "1", *args], capture_output=True, text=True, check=True)


def _report(stdout: str) -> dict:
    """The indented JSON report that closes speed.py's stdout."""
    return json.loads(stdout[stdout.index("{\n") :])


def test_speed_builds_the_protocols_network_with_the_given_options_over_it():
    report = _report(_run_speed("--protocol", "cpu", "--model-options", '{"mcsa_levels": [3, 4, 5]}').stdout)
    options = report["model_options"]
    assert options["channels"] == [4, 8, 16, 32, 64] and options["mcsa_gate_init"] == 0.0
    assert options["mcsa_levels"] == [3, 4, 5]
    expected = build_model("h2aseg", patch_size=(32, 32, 32), **options)
    assert report["results"][0]["parameters"] == sum(p.numel() for p in expected.parameters())
    default = build_model("h2aseg", patch_size=(32, 32, 32))
    assert report["results"][0]["parameters"] != sum(p.numel() for p in default.parameters())


def test_speed_refuses_model_options_that_are_not_a_json_object():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--model-options", "[1, 2]"], capture_output=True, text=True
    )
    assert done.returncode != 0 and "JSON object" in done.stderr


def test_speed_profile_lists_the_costliest_operators_on_stderr_and_keeps_stdout_json():
    done = _run_speed("--protocol", "cpu", "--profile", "3")
    assert _report(done.stdout)["results"][0]["steps_timed"] == 1
    lines = done.stderr[done.stderr.index("profile:") :].splitlines()
    assert "ms a step" in lines[0] and len(lines) >= 4
    assert any("convolution" in line for line in lines[1:4])

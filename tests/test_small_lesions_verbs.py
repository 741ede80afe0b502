"""The run-folder verbs of ``benchmarks/small_lesions.py`` leave out a run they cannot read and go on."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "small_lesions.py"


@pytest.fixture(scope="module")
def small_lesions():
    spec = importlib.util.spec_from_file_location("small_lesions", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PER_CASE = (
    "case_id,dice,gt_voxels,pred_voxels,hits,lesions,false_detections,fp_volume_ml,fn_volume_ml\n"
    "a,0.5,10,12,1,1,2,0.4,0.1\n"
    "b,0.0,0,3,0,0,1,0.2,nan\n"
)


def _run(root: Path, name: str, per_case: str, test_ids: list[str]) -> Path:
    run = root / name
    (run / "eval").mkdir(parents=True)
    (run / "eval" / "per_case.csv").write_text(per_case)
    (run / "splits.json").write_text(json.dumps({"test": test_ids}))
    (run / "pred").mkdir()
    return run


def test_errors_leaves_out_a_truncated_or_foreign_per_case_table_and_goes_on(small_lesions, tmp_path, capsys):
    good = _run(tmp_path, "good", PER_CASE, ["a", "b"])
    truncated = _run(tmp_path, "truncated", PER_CASE[:40], ["a", "b"])  # the header cut mid-way, no rows
    foreign = _run(tmp_path, "foreign", "case,score\na,0.5\n", ["a"])
    args = type("Args", (), {"runs": [good, truncated, foreign, tmp_path / "missing"]})
    with pytest.raises(SystemExit) as stop:
        small_lesions.errors(args)
    assert stop.value.code == 1
    out, err = capsys.readouterr()
    assert f"| {good} | 50.0 | 1 / 1 | 2 / 1 |" in out
    for left_out in ("truncated", "foreign", "missing"):
        assert f"left out: {tmp_path / left_out}:" in err
    assert str(truncated) not in out and str(foreign) not in out


def test_fp_uptake_refuses_a_run_missing_test_predictions_and_a_truncated_one(small_lesions, tmp_path):
    from h2aseg.errors import DataError

    cases = {}
    missing = _run(tmp_path, "missing", PER_CASE, ["a", "b"])
    (missing / "pred" / "a.nii.gz").write_bytes(b"")  # b has no prediction at all
    with pytest.raises(FileNotFoundError, match="no prediction for 1 test case"):
        small_lesions.false_uptake(missing, cases, (6.0, 12.0))
    truncated = _run(tmp_path, "truncated", PER_CASE, ["a"])
    (truncated / "pred" / "a.nii.gz").write_bytes(b"\x1f\x8b\x08\x00truncated")
    with pytest.raises(DataError):
        small_lesions.false_uptake(truncated, {"a": None}, (6.0, 12.0))
    failed = []
    assert (
        list(
            small_lesions._each_run(
                [truncated], lambda run: small_lesions.false_uptake(run, {"a": None}, (6.0,)), failed
            )
        )
        == []
    )
    assert failed and "DataError" in failed[0]


def test_compare_stops_with_one_line_on_a_missing_or_empty_table_and_names_studies_it_leaves_out(
    small_lesions, tmp_path, capsys
):
    cohort = tmp_path / "cohort"
    two = PER_CASE.replace("b,0.0,0,3", "b,0.2,5,3")  # both studies lesion-positive
    _run(cohort / "runs", "a", two, ["a", "b"])
    _run(cohort / "runs", "b", two, ["a", "b"])
    _run(cohort / "runs", "cut", two.split("\nb,")[0] + "\n", ["a", "b"])  # study b's row lost
    _run(cohort / "runs", "empty", PER_CASE[:40], ["a", "b"])

    def compare(a: str, b: str):
        small_lesions.compare(type("Args", (), {"cohort": cohort, "a": [a], "b": [b]}))

    for broken in ("empty", "missing"):
        with pytest.raises(SystemExit, match=f"compare: .*runs/{broken}/eval/per_case.csv"):
            compare(broken, "b")
    compare("cut", "b")
    out, err = capsys.readouterr()
    assert json.loads(out)["studies"] == 1
    assert "1 studies not scored by every run, left out: ['b']" in err


def test_compare_reads_run_folders_given_by_path_as_it_reads_named_runs(small_lesions, tmp_path, capsys):
    """A benchmark's runs (OUT/runs/ID/seedN) are compared by path, without a --cohort."""
    other = PER_CASE.replace("a,0.5,", "a,0.3,").replace("b,0.0,0,3", "b,0.2,5,3")
    both = PER_CASE.replace("b,0.0,0,3", "b,0.6,5,3")
    cohort = tmp_path / "cohort"
    _run(cohort / "runs", "a", both, ["a", "b"])
    _run(cohort / "runs", "b", other, ["a", "b"])
    bench = tmp_path / "bench" / "runs"
    a_path, b_path = (
        _run(bench / "x", "seed0", both, ["a", "b"]),
        _run(bench / "y", "seed0", other, ["a", "b"]),
    )

    small_lesions.compare(type("Args", (), {"cohort": cohort, "a": ["a"], "b": ["b"]}))
    by_name = json.loads(capsys.readouterr().out)
    small_lesions.compare(type("Args", (), {"cohort": None, "a": [str(a_path)], "b": [str(b_path)]}))
    by_path = json.loads(capsys.readouterr().out)
    assert by_name["studies"] == by_path["studies"] == 2
    assert by_name["difference_A_minus_B"] == by_path["difference_A_minus_B"] == 30.0  # (20 + 40) / 2
    assert by_path["A"]["runs"] == [str(a_path)]


def test_probe_patches_are_moved_inside_the_volume_only_when_asked(small_lesions):
    import numpy as np

    patch = np.array([8, 8, 8])
    padded = (8 + 20 + 8, 8 + 8 + 8, 8 + 4 + 8)  # a 20 x 8 x 4 volume padded by one patch per side
    centre = np.array([9, 20, 14])  # near the low border on axis 0, inside on 1, a small axis 2
    assert small_lesions._patch_start(centre, patch, padded, False).tolist() == [5, 16, 10]
    # axis 0 moved up to the volume's first voxel (8), axis 1 to where the patch ends at the volume's
    # end, axis 2 (shorter than a patch) starts at the volume's first voxel
    assert small_lesions._patch_start(centre, patch, padded, True).tolist() == [8, 8, 8]


def test_a_verb_given_a_missing_data_folder_stops_with_one_line(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, str(SCRIPT), "ct-probe", "--data", str(tmp_path / "nowhere"), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"small_lesions.py ct-probe: {tmp_path / 'nowhere'}: dataset folder not found; check the path"
    ]

"""The demo verb end to end at a toy size: every stage runs and the report links existing pictures."""

from __future__ import annotations

import re

from h2aseg.cli import main as cli_main


def test_demo_writes_report_with_table_and_pictures(tmp_path):
    out = tmp_path / "demo"
    code = cli_main(
        [
            "demo",
            "--out",
            str(out),
            "--cases",
            "6",
            "--minutes",
            "0.05",
            "--channels",
            "2",
            "4",
            "4",
            "8",
            "8",
            "--val-every",
            "100",
            "--no-progress",
        ]
    )
    assert code == 0
    report = (out / "report.md").read_text()
    assert "| h2aseg (trained here) |" in report and "| SUV ≥ 2.5 threshold (no training) |" in report
    assert "| basicunet (trained here) |" in report  # trained side by side, same budget
    assert (out / "compare" / "basicunet" / "train_summary.json").exists()
    assert "protocol: cpu" in (out / "run" / "config.yaml").read_text()
    pictures = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)
    assert any(p.endswith("_mip.png") for p in pictures) and "figures/training_curves.png" in pictures
    for picture in pictures:
        assert (out / picture).stat().st_size > 1000
    assert (out / "evaluation" / "per_case.csv").exists() and (out / "run" / "config.yaml").exists()

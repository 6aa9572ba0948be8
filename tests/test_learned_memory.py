"""benchmarks/learned_memory.py: its tiny mode runs every configuration in fresh processes and prints the table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "learned_memory.py"


@pytest.mark.slow
def test_tiny_run_of_the_script_prints_the_table(tiny_base_dir, glue_hub_dir):
    run = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--model",
            str(tiny_base_dir),
            "--counts",
            "1",
            "2",
            "--rows",
            "8",
            "--batch-size",
            "4",
            "--epochs",
            "1",
            "--glue-dir",
            str(glue_hub_dir),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    lines = run.stdout.splitlines()
    assert lines[0] == "## Learned soup memory"
    rows = [line.split(" | ") for line in lines if line.startswith(("| 1 |", "| 2 |"))]
    assert [(row[0], row[1], row[2]) for row in rows] == [
        ("| 1", "uniform", "0"),
        ("| 1", "learned", "2"),
        ("| 2", "uniform", "0"),
        ("| 2", "learned", "2"),
    ]
    assert all(float(row[3]) > 0 for row in rows)  # a measured peak RSS, MiB
    assert "| learned / uniform process peak, N=2 |" in run.stdout
    assert "| learned: process peak N=2 / N=1 |" in run.stdout

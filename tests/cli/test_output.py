"""Tests of hfsoup.cli_output: the runs table of a sweep, and strict JSON (the merge table is in test_card.py)."""

from __future__ import annotations

import json
from pathlib import Path

from hfsoup.cli.output import format_runs, print_json


def test_the_runs_table_lists_each_run_and_each_weights_score():
    runs = [
        (
            {"name": "lr0.0001-seed1-abc", "scores": {"raw": {"score": 0.81}, "ema": {"score": 0.8234}}},
            ["a/raw"],
        ),
        ({"name": "lr5e-05-seed1-def", "scores": {"raw": {"score": 0.75}, "ema": {"score": 0.7}}}, ["b/raw"]),
    ]
    lines = format_runs(runs, Path("runs/mrpc")).splitlines()
    assert lines[0] == "2 runs in runs/mrpc; validation score of each run's weights:"
    assert lines[1].split() == ["run", "raw", "ema"]
    assert lines[2].split() == ["lr0.0001-seed1-abc", "0.8100", "0.8234"]
    assert lines[3].split() == ["lr5e-05-seed1-def", "0.7500", "0.7000"]


def test_json_is_strict_with_nan_as_null(capsys):
    print_json({"score": float("nan"), "runs": [1, float("inf")], "name": "x"})
    assert json.loads(capsys.readouterr().out) == {"score": None, "runs": [1, None], "name": "x"}

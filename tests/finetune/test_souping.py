"""Tests of hfsoup.finetune.souping: a sweep's outputs and scored rows checked before training.
(The soup step itself, end to end: tests/test_cli_finetune.py and tests/test_shared_sweeps.py.)"""

from __future__ import annotations

import pytest

from hfsoup.errors import InvalidSettingError
from hfsoup.finetune.souping import check_runs_dir
from hfsoup.recipe.sweep import SweepRecipe


def test_training_rows_that_are_scored_are_warned_of_before_any_training(tmp_path, glue_hub_dir, caplog):
    import logging

    from hfsoup.eval import get_task
    from hfsoup.finetune.souping import warn_scored_training_rows

    finetune = {"base": "b", "train_split": "validation[:100]"}
    sweep = SweepRecipe(task="mrpc", dataset=str(glue_hub_dir), finetune=finetune, soup={"method": "uniform"})
    with caplog.at_level(logging.WARNING, logger="hfsoup"):
        warn_scored_training_rows(sweep, get_task("mrpc"), sweep.soup)
    lines = [r.getMessage() for r in caplog.records]
    assert any(
        line.startswith("The runs' validation scores split 'validation' shares 100 rows") for line in lines
    )
    assert any("soup's selection split 'selection' shares" in line for line in lines)
    assert any("soup's report split 'report' shares" in line for line in lines)

    caplog.clear()
    sweep.finetune.train_split = "train"
    with caplog.at_level(logging.WARNING, logger="hfsoup"):
        warn_scored_training_rows(sweep, get_task("mrpc"), sweep.soup)
    assert not caplog.records


def test_a_runs_folder_of_a_stopped_sweep_is_fine_and_one_inside_a_run_is_not(tmp_path):
    (tmp_path / "runs").mkdir()
    check_runs_dir(tmp_path / "runs")  # exists already: a sweep that resumes
    (tmp_path / "runs" / "seed1-abc").mkdir()
    (tmp_path / "runs" / "seed1-abc" / "run.json").write_text("{}")
    with pytest.raises(InvalidSettingError, match="inside the finished run"):
        check_runs_dir(tmp_path / "runs" / "seed1-abc" / "more")

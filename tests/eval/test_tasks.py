"""Tests of the GLUE task registry and the leaderboard scores (metrics: test_metrics.py; splits: test_data.py)."""

from __future__ import annotations

import pytest

from hfsoup.errors import UnknownNameError
from hfsoup.eval import TASKS, MeanOf, get_task

GLUE_COLUMNS = {
    "cola": ("sentence",),
    "sst2": ("sentence",),
    "mrpc": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"),
    "stsb": ("sentence1", "sentence2"),
    "mnli": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"),
}


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# --- registry ---------------------------------------------------------------------------------------------


def test_registry_has_all_of_glue_with_hub_columns():
    assert {name: task.text_columns for name, task in TASKS.items()} == GLUE_COLUMNS
    assert all(task.label_column == "label" for task in TASKS.values())


def test_label_names_follow_nyu_mll_glue():
    assert get_task("mrpc").label_names == ("not_equivalent", "equivalent")
    assert get_task("mnli").label_names == ("entailment", "neutral", "contradiction")
    assert get_task("wnli").label_names == ("not_entailment", "entailment")
    assert get_task("qqp").label_names == ("not_duplicate", "duplicate")
    stsb = get_task("stsb")
    assert stsb.is_regression and stsb.num_labels == 1 and stsb.label_names == ()
    assert not get_task("cola").is_regression and get_task("mnli").num_labels == 3


def test_mnli_halves_matched_and_reports_mismatched_whole():
    mnli = get_task("mnli")
    assert mnli.eval_splits == ("validation_matched", "validation_mismatched")
    assert mnli.report_splits == ("report", "validation_mismatched")
    assert get_task("rte").report_splits == ("report",)


def test_get_task_accepts_usual_spellings():
    assert get_task("SST-2") is TASKS["sst2"]
    assert get_task("STS-B") is TASKS["stsb"]


def test_unknown_task_lists_valid_names():
    with pytest.raises(UnknownNameError) as error:
        get_task("squad")
    message = one_line(error)
    assert "'squad'" in message and all(name in message for name in TASKS)


# --- leaderboard score --------------------------------------------------------------------------------------

METRICS = {
    "accuracy": 0.8,
    "f1": 0.9,
    "pearson": 0.7,
    "spearmanr": 0.5,
    "matthews_correlation": 0.3,
}
EXPECTED_SCORE = {
    "mrpc": 0.85,
    "qqp": 0.85,
    "stsb": 0.6,
    "cola": 0.3,
    "mnli": 0.8,
    "sst2": 0.8,
    "qnli": 0.8,
    "rte": 0.8,
    "wnli": 0.8,
}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_leaderboard_score_per_task(name):
    assert get_task(name).leaderboard_score(METRICS) == pytest.approx(EXPECTED_SCORE[name])


def test_leaderboard_score_with_missing_key_lists_valid_keys():
    with pytest.raises(UnknownNameError) as error:
        get_task("cola").leaderboard_score({"accuracy": 0.5})
    assert "matthews_correlation" in one_line(error) and "accuracy" in str(error.value)


def test_mean_of_describes_itself():
    assert str(get_task("mrpc").selection_key) == "mean of f1 and accuracy"
    assert MeanOf(("a", "b"))({"a": 1.0, "b": 0.0}) == 0.5

"""Tests of the GLUE task registry, the shipped GLUE metric, the held-out halves and split loading."""

from __future__ import annotations

import logging

import datasets
import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from hfsoup.errors import DatasetError, UnknownNameError
from hfsoup.eval import TASKS, MeanOf, get_task, halves, load_metric, load_split
from hfsoup.eval.metrics import SHIPPED_METRICS

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


# --- the shipped GLUE metric ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def test_glue_metric_mrpc_matches_sklearn(rng):
    predictions, references = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    result = load_metric(get_task("mrpc")).compute(predictions=predictions, references=references)
    assert set(result) == {"accuracy", "f1"}
    assert result["accuracy"] == pytest.approx(accuracy_score(references, predictions))
    assert result["f1"] == pytest.approx(f1_score(references, predictions))


def test_glue_metric_stsb_matches_scipy(rng):
    references = rng.uniform(0, 5, 300).astype(np.float32)
    predictions = (references + rng.normal(0, 1.5, 300)).astype(np.float32)
    result = load_metric(get_task("stsb")).compute(predictions=predictions, references=references)
    assert set(result) == {"pearson", "spearmanr"}
    assert result["pearson"] == pytest.approx(pearsonr(predictions, references)[0], abs=1e-6)
    assert result["spearmanr"] == pytest.approx(spearmanr(predictions, references)[0], abs=1e-6)
    assert 0.2 < result["pearson"] < 0.95


def test_glue_metric_cola_matches_sklearn(rng):
    references = rng.integers(0, 2, 300)
    predictions = np.where(rng.random(300) < 0.7, references, 1 - references)
    result = load_metric(get_task("cola")).compute(predictions=predictions, references=references)
    assert set(result) == {"matthews_correlation"}
    assert result["matthews_correlation"] == pytest.approx(matthews_corrcoef(references, predictions))
    assert result["matthews_correlation"] > 0.2


@pytest.mark.parametrize("name", ["sst2", "mnli", "qnli", "rte", "wnli", "qqp"])
def test_glue_metric_loads_offline_for_every_task(name):
    result = load_metric(get_task(name)).compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])
    assert result["accuracy"] == 0.75
    assert get_task(name).leaderboard_score(result) > 0


def test_another_metric_by_path(tmp_path):
    """`metric=` takes any evaluate module; here the shipped GLUE file, by its path."""
    GLUE_METRIC_DIR = SHIPPED_METRICS["glue"]

    metric = load_metric(get_task("rte"), str(GLUE_METRIC_DIR / "glue.py"))
    assert metric.compute(predictions=[1, 1], references=[1, 0]) == {"accuracy": 0.5}


def test_glue_metric_refuses_an_unknown_config():
    import evaluate

    GLUE_METRIC_DIR = SHIPPED_METRICS["glue"]

    with pytest.raises(ValueError, match="unknown GLUE config 'squad'"):
        evaluate.load(str(GLUE_METRIC_DIR), config_name="squad")


def test_unknown_metric_is_one_line_error(tmp_path):
    with pytest.raises(UnknownNameError) as error:
        load_metric(get_task("rte"), str(tmp_path / "no_such_metric"))
    assert "no_such_metric" in one_line(error)


# --- held-out halves -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_rows", [1, 2, 408, 1043])
def test_halves_are_deterministic_disjoint_and_cover(num_rows):
    first, again = halves(num_rows, seed=0), halves(num_rows, seed=0)
    assert first == again
    selection, report = set(first["selection"]), set(first["report"])
    assert not selection & report
    assert selection | report == set(range(num_rows))
    assert len(first["selection"]) - len(first["report"]) in (0, 1)
    assert first["selection"] == sorted(first["selection"])


def test_halves_depend_on_the_seed():
    assert halves(408, seed=0) != halves(408, seed=1)
    assert halves(408, seed=0)["selection"] != list(range(204))  # shuffled, not the first half


# --- loading splits (real data, laid out like nyu-mll/glue) ----------------------------------------------


@pytest.mark.parametrize("name,rows", [("mrpc", 408), ("stsb", 1500), ("cola", 1043)])
def test_load_split_halves_of_real_validation(glue_hub_dir, name, rows):
    task = get_task(name)
    selection = load_split(task, "selection", dataset=str(glue_hub_dir))
    report = load_split(task, "report", dataset=str(glue_hub_dir))
    assert set(task.columns) <= set(selection.column_names)
    assert selection.num_rows + report.num_rows == rows
    assert not set(selection["idx"][:]) & set(report["idx"][:])
    again = load_split(task, "selection", dataset=str(glue_hub_dir))
    assert again["idx"][:] == selection["idx"][:]
    if task.is_regression:
        assert selection.features["label"].dtype == "float32"
    else:
        assert tuple(selection.features["label"].names) == task.label_names


def test_load_split_takes_datasets_split_syntax(glue_hub_dir):
    task = get_task("mrpc")
    assert load_split(task, "validation[:50%]", dataset=str(glue_hub_dir)).num_rows == 204
    tail = load_split(task, "train[-500:]", dataset=str(glue_hub_dir))
    assert tail.num_rows == 500


def test_default_dataset_is_the_hub(monkeypatch):
    """Offline (as in every test), the default `nyu-mll/glue` fails with a one-line DatasetError."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetError) as error:
        load_split(get_task("mrpc"), "validation")
    assert "nyu-mll/glue" in one_line(error)


def test_unknown_split_is_one_line_error(glue_hub_dir):
    with pytest.raises(DatasetError) as error:
        load_split(get_task("mrpc"), "test", dataset=str(glue_hub_dir))
    message = one_line(error)
    assert "'test'" in message and "validation" in message


def test_missing_config_names_the_configs(glue_hub_dir):
    with pytest.raises(DatasetError) as error:
        load_split(get_task("qqp"), "validation", dataset=str(glue_hub_dir))
    assert "qqp" in one_line(error) and "mrpc" in str(error.value)


def test_missing_columns_name_expected_and_found(tmp_path):
    path = tmp_path / "validation.csv"
    path.write_text("text,label\nhello,0\nworld,1\n")
    with pytest.raises(DatasetError) as error:
        load_split(get_task("mrpc"), "validation", dataset=str(path))
    message = one_line(error)
    assert "['sentence1', 'sentence2', 'label']" in message and "['text', 'label']" in message


def test_data_file_is_the_named_split_and_unlabelled_rows_are_dropped(tmp_path, caplog):
    path = tmp_path / "mine.tsv"
    path.write_text("sentence\tlabel\ngood\t1\nbad\t0\nhidden\t-1\nfine\t1\n")
    with caplog.at_level(logging.WARNING, logger="hfsoup.tasks"):
        rows = load_split(get_task("sst2"), "validation", dataset=str(path))
    assert rows["sentence"][:] == ["good", "bad", "fine"]
    assert "Dropped 1 unlabelled" in caplog.text
    halves_ = [
        load_split(get_task("sst2"), half, dataset=str(path)).num_rows for half in ("selection", "report")
    ]
    assert halves_ == [2, 1]


def test_unsupported_data_file_is_refused(tmp_path):
    path = tmp_path / "validation.xlsx"
    path.write_bytes(b"")
    with pytest.raises(DatasetError) as error:
        load_split(get_task("sst2"), "validation", dataset=str(path))
    assert ".csv" in one_line(error) and "validation.xlsx" in str(error.value)


def test_test_split_without_labels_is_refused(tmp_path):
    path = tmp_path / "test.csv"
    path.write_text("sentence,label\na,-1\nb,-1\n")
    with pytest.raises(DatasetError) as error:
        load_split(get_task("cola"), "test", dataset=str(path))
    assert "no labelled rows" in one_line(error)


def test_plain_folder_without_configs(tmp_path):
    (tmp_path / "validation.csv").write_text("sentence,label\na,0\nb,1\n")
    assert load_split(get_task("sst2"), "validation", dataset=str(tmp_path)).num_rows == 2


def test_label_names_in_another_order_are_refused(tmp_path):
    features = datasets.Features(
        {"sentence1": datasets.Value("string"), "sentence2": datasets.Value("string"),
         "label": datasets.ClassLabel(names=["entailment", "not_entailment"])}
    )  # fmt: skip
    rows = datasets.Dataset.from_dict(
        {"sentence1": ["a"], "sentence2": ["b"], "label": [0]}, features=features
    )
    rows.to_parquet(tmp_path / "validation.parquet")
    with pytest.raises(DatasetError) as error:
        load_split(get_task("wnli"), "validation", dataset=str(tmp_path / "validation.parquet"))
    assert "['not_entailment', 'entailment']" in one_line(error)


def test_label_ids_out_of_range_are_refused(tmp_path):
    path = tmp_path / "validation.csv"
    path.write_text("sentence1,sentence2,label\na,b,0\nc,d,3\n")
    with pytest.raises(DatasetError) as error:
        load_split(get_task("rte"), "validation", dataset=str(path))
    assert "[3]" in one_line(error)

"""Tests of hfsoup.eval.metrics: the shipped GLUE metric, local metric modules, and no Hub script by default."""

from __future__ import annotations

import numpy as np
import pytest
from cli_helpers import user_error
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from hfsoup.errors import UnknownNameError
from hfsoup.eval import get_task, load_metric
from hfsoup.eval.metrics import SHIPPED_METRICS


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


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


# --- a metric that is neither shipped nor local is a script from the Hub: refused unless trusted -----------


@pytest.fixture
def evaluate_load(monkeypatch) -> list[str]:
    """Record the names `evaluate.load` is asked for, without loading (or downloading) anything."""
    import evaluate

    asked = []

    def load(path, **kwargs):
        asked.append(path)
        return "a metric"

    monkeypatch.setattr(evaluate, "load", load)
    return asked


def test_hub_metric_is_refused_without_trust(evaluate_load):
    with pytest.raises(UnknownNameError) as error:
        load_metric(get_task("rte"), "f1")
    message = one_line(error)
    assert "'f1'" in message and "--trust-remote-metric" in message and "glue" in message
    assert evaluate_load == []  # nothing was fetched, nothing ran


def test_hub_metric_loads_when_trusted(evaluate_load):
    assert load_metric(get_task("rte"), "f1", trust_remote_metric=True) == "a metric"
    assert evaluate_load == ["f1"]


def test_shipped_and_local_metrics_need_no_trust(evaluate_load, tmp_path):
    load_metric(get_task("rte"))
    load_metric(get_task("rte"), "glue")
    load_metric(get_task("rte"), str(SHIPPED_METRICS["glue"]))
    assert evaluate_load == [str(SHIPPED_METRICS["glue"])] * 3


def test_shipped_metric_folder_by_its_path_computes():
    metric = load_metric(get_task("mrpc"), str(SHIPPED_METRICS["glue"]))
    assert metric.compute(predictions=[1, 0], references=[1, 1]) == {
        "accuracy": 0.5,
        "f1": pytest.approx(2 / 3),
    }


def test_cli_refuses_a_hub_metric_before_reading_any_model(capsys, tmp_path):
    missing = [tmp_path / "missing-1", tmp_path / "missing-2"]
    line = user_error(capsys, "merge", *missing, "--task", "mrpc", "--metric", "f1")
    assert "--trust-remote-metric" in line and "No model folder" not in line

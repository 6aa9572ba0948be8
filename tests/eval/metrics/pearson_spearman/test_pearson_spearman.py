"""Tests of the shipped `pearson_spearman` metric module: offline, SciPy's numbers under the STS-B keys."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from hfsoup.eval import Task, load_metric

TASK = Task(name="ratings", text_columns=("text",), label_names=(), metric_name="pearson_spearman")


def test_correlations_match_scipy():
    rng = np.random.default_rng(3)
    references = rng.normal(size=300).astype(np.float32)
    predictions = (references + rng.normal(scale=0.8, size=300)).astype(np.float32)
    result = load_metric(TASK).compute(predictions=predictions, references=references)
    assert result == {
        "pearson": pytest.approx(pearsonr(predictions, references)[0], rel=1e-6),
        "spearmanr": pytest.approx(spearmanr(predictions, references)[0], rel=1e-6),
    }


def test_a_monotone_but_curved_prediction_has_spearman_one_and_pearson_below():
    references = np.linspace(0.0, 5.0, 50, dtype=np.float32)
    result = load_metric(TASK).compute(predictions=np.exp(references), references=references)
    assert result["spearmanr"] == pytest.approx(1.0) and result["pearson"] < 0.9

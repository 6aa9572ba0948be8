"""Tests of the shipped `accuracy` metric module: offline, the Hub metric's key, any number of classes."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from hfsoup.eval import Task, load_metric

TASK = Task(
    name="snli", text_columns=("premise", "hypothesis"), label_names=("a", "b", "c"), metric_name="accuracy"
)


def test_accuracy_of_three_classes_matches_sklearn():
    rng = np.random.default_rng(7)
    references, predictions = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    result = load_metric(TASK).compute(predictions=predictions, references=references)
    assert result == {"accuracy": pytest.approx(accuracy_score(references, predictions))}


def test_accuracy_ignores_the_task_name_it_is_configured_with():
    for name in ("imdb", "my-reviews"):
        metric = load_metric(Task(name=name, text_columns=("text",), label_names=("neg", "pos")), "accuracy")
        assert metric.compute(predictions=[1, 0, 1, 1], references=[1, 1, 1, 1]) == {"accuracy": 0.75}

"""Tests of hfsoup.eval.bootstrap: the paired interval replays under its seed, and its fast metrics are exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import tiny_bert, tiny_tokenizer

from hfsoup.eval import get_task, load_split
from hfsoup.eval.bootstrap import _difference, _fast_differences, paired_gain
from hfsoup.eval.scoring import Scorer


def scorer_of(task_name, glue_hub_dir, tmp_path, rows="validation[:120]"):
    task = get_task(task_name)
    model = tiny_bert(seed=0, num_labels=task.num_labels)
    return Scorer(model, tiny_tokenizer(tmp_path), task, load_split(task, rows, dataset=str(glue_hub_dir)))


def logits_pair(scorer, seed):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.as_tensor(scorer.references)
    shape = (len(scorer), scorer.task.num_labels)
    if scorer.task.is_regression:
        return labels[:, None] + torch.randn(shape, generator=generator), labels[:, None] + 2 * torch.randn(
            shape, generator=generator
        )
    good = torch.nn.functional.one_hot(labels.long(), scorer.task.num_labels).float() + torch.randn(
        shape, generator=generator
    )
    return good, torch.randn(shape, generator=generator)


@pytest.mark.parametrize("task_name", ["mrpc", "cola", "stsb", "rte"])
def test_the_fast_metrics_equal_the_shipped_metric_on_every_resample(task_name, glue_hub_dir, tmp_path):
    scorer = scorer_of(task_name, glue_hub_dir, tmp_path)
    better, worse = logits_pair(scorer, 0)
    counts = np.random.default_rng(3).multinomial(len(scorer), np.full(len(scorer), 1 / len(scorer)), 20)
    fast = _fast_differences(scorer, better, worse, counts)
    slow = np.array([_difference(scorer, better, worse, row_counts) for row_counts in counts])
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-6)  # the shipped metric rounds to float32


def test_the_interval_replays_under_its_seed_and_brackets_a_clear_gain(glue_hub_dir, tmp_path):
    scorer = scorer_of("mrpc", glue_hub_dir, tmp_path)
    better, worse = logits_pair(scorer, 1)
    gain = paired_gain(scorer, better, worse, seed=7)
    assert gain == paired_gain(scorer, better, worse, seed=7)
    assert gain != paired_gain(scorer, better, worse, seed=8)
    assert 0 < gain["low"] <= gain["soup_minus_best"] <= gain["high"]
    same = paired_gain(scorer, better, better, seed=7)
    assert same["low"] == same["high"] == same["soup_minus_best"] == 0.0

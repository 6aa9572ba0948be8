"""A fresh head for a soup: its final projection fitted on the soup's own frozen features (`--refit-head`).

Ingredients whose heads were drawn independently (Hub models fine-tuned by different people, each from its own
random head) have backbones that average well and heads that do not. `--refit-head` averages everything with the
chosen method, then fits the head's final projection anew on the soup's features of a training split, with the
same linear probe a sweep's start uses (`hfsoup/eval/probe.py`). A head with a hidden layer keeps that layer
averaged and has its final projection fitted on the layer's output.
"""

from __future__ import annotations

import logging
import time

import datasets
import torch
from transformers import PreTrainedTokenizerBase

from ..eval.probe import DEFAULT_L2, head_features, probe_head
from ..eval.tasks import Task
from ..soup.heads import head_layout

__all__ = ["refit_head"]

logger = logging.getLogger(__name__)


def refit_head(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    rows: datasets.Dataset,
    *,
    split: str,
    l2: float = DEFAULT_L2,
    max_length: int = 128,
    batch_size: int = 64,
) -> dict:
    """Fit the final projection of `model`'s head on its frozen features of `rows`, in place.

    Args:
        model: the soup, in float32 (its weights are the soup's).
        tokenizer: its tokenizer.
        task: the task (labels, columns, metric).
        rows: the training rows the head is fitted on.
        split: the split's name, for the record.
        l2: the probe's L2 strength.
        max_length: longest tokenized input.
        batch_size: rows per forward pass.

    Returns:
        The record the card and soup.yaml show: `{"split", "rows", "projection", "probe_l2", "train", "seconds"}`.
    """
    began = time.perf_counter()
    layout = head_layout(model.config)
    if len(layout.modules) > 1:
        logger.info(
            "The head has a hidden layer: its final projection %s is refitted on that layer's output",
            layout.output,
        )
    features = head_features(
        model, layout.output, tokenizer, task, rows, batch_size=batch_size, max_length=max_length
    )
    labels = torch.as_tensor(rows.with_format("numpy")[task.label_column][:])
    probe = probe_head(features, labels, task, l2=l2)
    projection = model.get_submodule(layout.output)
    with torch.no_grad():
        projection.weight.copy_(probe.weight.to(projection.weight))
        if projection.bias is not None:
            projection.bias.copy_(probe.bias.to(projection.bias))
    record = {
        "split": split,
        "rows": probe.rows,
        "projection": layout.output,
        "probe_l2": l2,
        "train": probe.train,
        "seconds": round(time.perf_counter() - began, 1),
    }
    logger.info(
        "Refitted the soup's head %s on %d rows of %s: train score %.4f",
        layout.output,
        probe.rows,
        split,
        probe.train["score"],
    )
    return record

"""How sure a gain is: a paired bootstrap of one model's score minus another's over the same rows.

The rows of a split are resampled with replacement (seeded, so an interval replays), both models are scored on
each resample with the task's score, and the interval is the percentiles of the differences. Paired: both
models are scored on the same resampled rows, so the row-to-row variation they share cancels, which is what
makes a small gain on a few hundred rows measurable at all.

With hfsoup's shipped metrics (accuracy, binary F1 and Matthews correlation, Pearson and Spearman) every
resample is scored at once from its row counts, in numpy; they equal the metrics of the resampled rows (the
tests check them against the shipped metric). Any other metric is computed resample by resample.
"""

from __future__ import annotations

import numpy as np
import torch

from .scoring import Scorer

__all__ = ["RESAMPLES", "paired_gain"]

RESAMPLES = 1000
"""Resamples per interval."""


def paired_gain(
    scorer: Scorer,
    logits: torch.Tensor,
    reference: torch.Tensor,
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
    level: float = 0.95,
) -> dict:
    """The score of `logits` minus that of `reference` on `scorer`'s split, with a paired bootstrap interval.

    Args:
        scorer: the split's scorer (its rows, labels and metric).
        logits: one model's logits on the split (rows in the scorer's order).
        reference: the other model's logits on the same rows.
        seed: the resampling seed; the same seed gives the same interval.
        resamples: how many resamples.
        level: the interval's coverage.

    Returns:
        `{"soup_minus_best", "low", "high", "level", "resamples", "seed"}`: the difference on the whole split,
        and the interval's bounds (a resample where a score is undefined, such as a correlation of constant
        predictions, is left out).

    Example:
        ```python
        >>> paired_gain(report_scorer, soup_logits, best_logits, seed=0)["low"]
        -0.0042
        ```
    """
    point = scorer.metrics(logits)["score"] - scorer.metrics(reference)["score"]
    counts = np.random.default_rng(seed).multinomial(
        len(scorer), np.full(len(scorer), 1 / len(scorer)), resamples
    )
    differences = _fast_differences(scorer, logits, reference, counts)
    if differences is None:
        differences = np.array([_difference(scorer, logits, reference, row_counts) for row_counts in counts])
    differences = differences[np.isfinite(differences)]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail]) if len(differences) else (np.nan, np.nan)
    return {
        "soup_minus_best": float(point),
        "low": float(low),
        "high": float(high),
        "level": level,
        "resamples": resamples,
        "seed": seed,
    }


def _predictions(scorer: Scorer, logits: torch.Tensor) -> np.ndarray:
    return (logits[:, 0] if scorer.task.is_regression else logits.argmax(dim=-1)).numpy()


def _difference(
    scorer: Scorer, logits: torch.Tensor, reference: torch.Tensor, row_counts: np.ndarray
) -> float:
    """One resample's difference, with the scorer's own metric (any metric)."""
    rows = np.repeat(np.arange(len(row_counts)), row_counts)
    return (
        scorer.metrics(logits[rows], rows=rows)["score"] - scorer.metrics(reference[rows], rows=rows)["score"]
    )


def _fast_differences(
    scorer: Scorer, logits: torch.Tensor, reference: torch.Tensor, counts: np.ndarray
) -> np.ndarray | None:
    """Every resample's difference at once, for the shipped metrics; `None` when the score needs another."""
    if not scorer.computes_shipped_metric:
        return None
    labels, regression = scorer.references, scorer.task.is_regression
    mine = _metrics(_predictions(scorer, logits), labels, counts, regression)
    theirs = _metrics(_predictions(scorer, reference), labels, counts, regression)
    if not regression and scorer.task.num_labels > 2:  # F1 and Matthews here are binary: accuracy only
        mine, theirs = {"accuracy": mine["accuracy"]}, {"accuracy": theirs["accuracy"]}
    try:
        return np.array(
            [
                scorer.task.leaderboard_score({k: float(v[b]) for k, v in mine.items()})
                - scorer.task.leaderboard_score({k: float(v[b]) for k, v in theirs.items()})
                for b in range(len(counts))
            ]
        )
    except KeyError:
        return None


def _metrics(predictions: np.ndarray, labels: np.ndarray, counts: np.ndarray, regression: bool) -> dict:
    """The shipped metrics of each resample (a row of `counts`: how often each row is drawn)."""
    if regression:
        return {
            "pearson": _pearson(predictions, labels, counts),
            "spearmanr": _pearson(_ranks(predictions, counts), _ranks(labels, counts), counts),
        }
    total = counts.sum(axis=1)
    out = {"accuracy": counts @ (predictions == labels) / total}
    tp, fp, fn, tn = (
        counts @ ((predictions == a) & (labels == b)) for a, b in ((1, 1), (1, 0), (0, 1), (0, 0))
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        out["f1"] = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        out["matthews_correlation"] = np.where(denominator > 0, (tp * tn - fp * fn) / denominator, 0.0)
    return out


def _pearson(x: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The Pearson correlation of each resample; `x` and `y` are per row, or per resample and row."""
    total = counts.sum(axis=1, keepdims=True)
    dx = x - (counts * x).sum(axis=1, keepdims=True) / total
    dy = y - (counts * y).sum(axis=1, keepdims=True) / total
    with np.errstate(divide="ignore", invalid="ignore"):
        return (counts * dx * dy).sum(axis=1) / np.sqrt(
            (counts * dx * dx).sum(axis=1) * (counts * dy * dy).sum(axis=1)
        )


def _ranks(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each row's average rank among each resample's drawn rows (ties share their mean rank), per resample."""
    distinct, inverse = np.unique(values, return_inverse=True)
    per_value = np.zeros((len(counts), len(distinct)))
    np.add.at(per_value.T, inverse, counts.T)  # each resample's draws of each distinct value
    below = np.cumsum(per_value, axis=1) - per_value
    return (below + (per_value + 1) / 2)[:, inverse]

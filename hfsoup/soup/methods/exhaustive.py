"""Subset search: score the uniform soup of every non-empty subset of the ingredients and keep the best.

This is the exhaustive search practitioners run when there are few ingredients, an alternative to the greedy
soup of Wortsman et al. 2022: greedy tries N - 1 soups along one path, the search tries all 2^N - 1 subsets.

Cost: the subsets are visited in Gray-code order, so each next subset adds or removes one ingredient. An fp32
running sum of the current subset, next to the target, is updated with that one ingredient (one read), then
`sum / |subset|` is written into the target and scored. Every 32 updates, and on each single-ingredient subset,
the sum is rebuilt from its members, so fp32 rounding from adding and removing never builds up. Memory is the
model, one fp32 copy and one streamed group, however many ingredients there are.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence

import torch
from huggingface_hub.utils import tqdm

from ...averaging import add_scaled_, running_mean_
from ...errors import InvalidSettingError
from .base import SoupIngredient, SoupResult, SubsetScore, is_number, refuse_weights, takes_beat
from .layout import TargetLayout

__all__ = ["MAX_INGREDIENTS", "TOP_SUBSETS", "check_count", "exhaustive_soup", "gray_flips", "rank_key"]

logger = logging.getLogger(__name__)

MAX_INGREDIENTS = 12
"""The most ingredients a subset search takes: 12 ingredients make 4095 subsets, each one scoring pass."""
TOP_SUBSETS = 5
"""How many of the best subsets are reported."""
_REBUILD_EVERY = 32  # updates of the running sum between two rebuilds from the members


def check_count(count: int) -> None:
    """Refuse more than `MAX_INGREDIENTS` ingredients, before any weight is read.

    Raises:
        InvalidSettingError: if `count` is above the limit; the message names the number of subsets.
    """
    if count > MAX_INGREDIENTS:
        raise InvalidSettingError(
            f"Soup method 'exhaustive' scores every non-empty subset: {count} ingredients make {2**count - 1} "
            f"subsets, above its limit of {MAX_INGREDIENTS} ingredients ({2**MAX_INGREDIENTS - 1} subsets); "
            f"give at most {MAX_INGREDIENTS} ingredients, or use method 'greedy' ({count - 1} soups to score)."
        )


def gray_flips(count: int) -> Iterator[tuple[int, bool]]:
    """Every non-empty subset of `range(count)`, once, as a walk that flips one member per step.

    Step `k` (from 1) moves from Gray code `k - 1` to Gray code `k ^ (k >> 1)`: the member flipped is the
    lowest set bit of `k`.

    Returns:
        An iterator of `(index, joins)`: the ingredient flipped and whether it joins (else it leaves).

    Example:
        ```python
        >>> list(gray_flips(2))
        [(0, True), (1, True), (0, False)]
        ```
    """
    for step in range(1, 2**count):
        index = (step & -step).bit_length() - 1
        yield index, bool((step ^ (step >> 1)) >> index & 1)


def rank_key(subset: SubsetScore) -> tuple[float, int, list[int]]:
    """The order of subsets, best first: higher score, then fewer ingredients, then the smaller index list.

    NaN (a metric that could not be computed) ranks below every number. The rule depends only on the
    subsets, never on the order they were visited in, so every search picks the same subset.
    """
    score = -math.inf if math.isnan(subset.score) else subset.score
    return (-score, len(subset.indices), subset.indices)


def _bar(top: list[SubsetScore], indices: list[int]) -> float | None:
    """The `beat` of a subset: it enters the full `top` only by scoring above this (`None`: it always enters)."""
    if len(top) < TOP_SUBSETS or not math.isfinite(top[-1].score):
        return None
    last = top[-1]
    if (len(indices), indices) < (len(last.indices), last.indices):
        return math.nextafter(last.score, -math.inf)  # it wins a tie, so only a lower score keeps it out
    return last.score


def _known_scores(individual_scores: Sequence[float] | None, count: int) -> list[float] | None:
    if individual_scores is None:
        return None
    scores = list(individual_scores)
    if len(scores) != count or not all(is_number(s) for s in scores):
        raise InvalidSettingError(
            f"Individual scores must be one number per ingredient ({count}), got {scores!r}; "
            "pass the score of each ingredient, or None to score the single ingredients again."
        )
    return [float(s) for s in scores]


def _rebuild(
    layout: TargetLayout,
    sums: dict[str, torch.Tensor],
    ingredients: Sequence[SoupIngredient],
    members: list[int],
    *,
    copy_others: bool,
) -> None:
    """Recompute the fp32 sum of the members from their files, so no rounding is carried over."""
    for tensor in sums.values():
        tensor.zero_()
    for index in members:
        for names, values in layout.stream(ingredients[index], copy_others=copy_others):
            add_scaled_([sums[name] for name in names], values, 1.0)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (
        f"{hours} h {minutes} min" if hours else f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
    )


@torch.no_grad()
def _log_plan(total: int, count: int, known: bool, bounded: bool) -> int:
    """Log how many subsets the search visits and how many it scores; returns the number of scoring passes."""
    passes = total - (count if known else 0)
    logger.info(
        "Exhaustive soup: %d subsets of %d ingredients, %d scoring passes%s%s.",
        total,
        count,
        passes,
        " (the single ingredients' scores are known)" if known else "",
        ", each stopped once it cannot enter the top" if bounded else "",
    )
    return passes


def _score_subset(
    sums: dict[str, torch.Tensor],
    target: dict[str, torch.Tensor],
    size: int,
    score: Callable,
    bar: float | None,
) -> float | None:
    """Write the subset's uniform soup (`sums / size`) into `target` and score it, stopping early below `bar`."""
    for name, tensor in sums.items():
        torch.div(tensor, size, out=target[name])
    return score() if bar is None else score(beat=bar)


def exhaustive_soup(
    ingredients: Sequence[SoupIngredient],
    target: dict[str, torch.Tensor],
    *,
    score: Callable[..., float | None] | None = None,
    individual_scores: Sequence[float] | None = None,
    weights: Sequence[float] | None = None,
) -> SoupResult:
    """Score the uniform soup of each of the 2^N - 1 non-empty subsets (N <= 12) and keep the best.

    The winner has the highest selection score; ties go to the smaller subset, then to the smaller list of
    indices (see [`rank_key`]). Single ingredients are not scored again when `individual_scores` gives their
    scores. If `score` takes a keyword `beat`, it is called as `score(beat=x)` and may return `None` once the
    subset provably scores `<= x`; `x` is the score a subset must exceed to enter the best `TOP_SUBSETS`
    found so far (a tie that the tie rule favours passes `x` just below), so stopping early never changes the
    winner nor the reported top subsets. The search logs how many subsets it scores, then, after the first
    one, how long it should take.

    The target ends holding the uniform soup of the winner, recomputed from its ingredients as `uniform`
    would (integer tensors from its first ingredient; during the search they come from ingredient 0).
    `selection_score` and `top_subsets` are the scores measured in the search, of `sum / |subset|`, which may
    differ from the recomputed soup's in the last digits. See [`SoupMethod.__call__`] for the arguments.

    Raises:
        InvalidSettingError: if `score` is missing, `weights` is given, `individual_scores` is not one number
            per ingredient, or there are more than `MAX_INGREDIENTS` ingredients.
    """
    refuse_weights("exhaustive", weights)
    check_count(len(ingredients))
    if score is None:
        raise InvalidSettingError(
            "The exhaustive soup needs `score`, a function scoring the weights in the model."
        )
    known = _known_scores(individual_scores, len(ingredients))
    bounded = takes_beat(score)
    total = 2 ** len(ingredients) - 1
    passes = _log_plan(total, len(ingredients), known is not None, bounded)

    layout = TargetLayout(target)
    sums = layout.fp32_soup(reuse_target=False)
    members: list[int] = []
    top: list[SubsetScore] = []
    updates = stopped = 0
    timed = False
    flips = tqdm(gray_flips(len(ingredients)), total=total, desc="exhaustive soup", unit="subset")
    for step, (index, joins) in enumerate(flips):
        started = time.perf_counter()
        members = sorted([*members, index]) if joins else [m for m in members if m != index]
        updates += 1
        if len(members) == 1 or updates >= _REBUILD_EVERY:
            # Integer tensors are not averaged: during the search they come from ingredient 0, read first.
            _rebuild(layout, sums, ingredients, members, copy_others=step == 0)
            updates = 0
        else:
            for names, values in layout.stream(ingredients[index], copy_others=False):
                add_scaled_([sums[name] for name in names], values, 1.0 if joins else -1.0)
        if known is not None and len(members) == 1:
            value = known[members[0]]
        else:
            value = _score_subset(sums, target, len(members), score, _bar(top, members) if bounded else None)
            if not timed:
                _log_estimate(time.perf_counter() - started, passes - 1)
                timed = True
        if value is None:
            stopped += 1
            continue
        bisect.insort(top, SubsetScore(list(members), float(value)), key=rank_key)
        del top[TOP_SUBSETS:]

    best = top[0]
    for tensor in sums.values():
        tensor.zero_()
    for position, index in enumerate(best.indices):
        for names, values in layout.stream(ingredients[index], copy_others=position == 0):
            running_mean_([sums[name] for name in names], values, position)
    layout.write(sums)
    logger.info(
        "Exhaustive soup: ingredients %s score %.4f, the best of %d subsets (%d passes stopped early).",
        best.indices,
        best.score,
        total,
        stopped,
    )
    return SoupResult(
        method="exhaustive",
        selected=list(best.indices),
        weights=[1.0 / len(best.indices)] * len(best.indices),
        selection_score=best.score,
        top_subsets=top,
    )


def _log_estimate(first: float, left: int) -> None:
    logger.info(
        "Exhaustive soup: the first subset took %s (one ingredient read, one scoring pass); the %d passes left "
        "should take about %s, less when passes stop early.",
        _duration(first),
        left,
        _duration(first * left),
    )

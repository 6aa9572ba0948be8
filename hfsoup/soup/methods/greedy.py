"""The greedy soup (Wortsman et al. 2022, recipe 1): add ingredients best-first while the held-out score improves."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import torch
from huggingface_hub.utils import tqdm

from ...averaging import lerp_, running_mean_
from ...errors import InvalidSettingError
from .base import SoupIngredient, SoupResult, SoupStep, is_number, refuse_weights
from .layout import TargetLayout

__all__ = ["greedy_soup"]

logger = logging.getLogger(__name__)


def _rank(value: float) -> float:
    """A score as it is compared: NaN (a metric that could not be computed) counts as the worst."""
    return -math.inf if math.isnan(value) else value


def _check_individual_scores(individual_scores: Sequence[float] | None, count: int) -> list[float]:
    if individual_scores is None or len(individual_scores) != count:
        got = "none" if individual_scores is None else len(individual_scores)
        raise InvalidSettingError(
            f"The greedy soup needs one individual selection score per ingredient ({count}), got {got}; "
            "score each ingredient first (load_into + score)."
        )
    bad = [s for s in individual_scores if not is_number(s)]
    if bad:
        raise InvalidSettingError(f"Individual scores must be numbers; got {bad[0]!r}.")
    return [float(s) for s in individual_scores]


def _write_candidate(
    held: list[torch.Tensor], soup: list[torch.Tensor], values: list[torch.Tensor], weight: float
) -> None:
    """`held = soup + weight * (values - soup)`, computed in fp32 and written into the target's tensors.

    fp32 targets are computed in place (copy, then lerp): no scratch copy of the group is allocated, which
    saves a pass over memory and fresh pages per group and candidate. Other dtypes go through an fp32 copy
    so the candidate is rounded once.
    """
    if all(tensor.dtype == torch.float32 for tensor in held):
        torch._foreach_copy_(held, soup)
        lerp_(held, values, weight)
        return
    candidate = [tensor.clone() for tensor in soup]
    lerp_(candidate, values, weight)
    torch._foreach_copy_(held, candidate)


@torch.no_grad()
def greedy_soup(
    ingredients: Sequence[SoupIngredient],
    target: dict[str, torch.Tensor],
    *,
    score: Callable[[], float] | None = None,
    individual_scores: Sequence[float] | None = None,
    weights: Sequence[float] | None = None,
    min_gain: float = 0.0,
) -> SoupResult:
    """The greedy soup of Wortsman et al. 2022 (Recipe 1): add ingredients best-first while the score improves.

    Ingredients are sorted by `individual_scores`, best first (a stable sort: ties keep the given order; NaN
    counts as the worst score). The soup starts as the best ingredient, whose individual score is its score,
    so no single ingredient is scored again. Each next ingredient is tried in turn: the uniform average of the
    soup and it is written into the target and scored, and it is kept only if that candidate scores strictly
    better (`>`) than the current soup. A tie rejects the ingredient. The accept rule follows the authors'
    released code (`mlfoundations/model-soups`, `main.py`); the paper's pseudo-code writes `>=`, which would
    also add ingredients that leave the score unchanged. The order of ingredients with tied individual scores
    differs from the released code, which tries them in reverse input order: hfsoup keeps the input order,
    so of two tied ingredients the one listed first is tried (and, if best, started from) first. Every
    decision is logged and recorded in `SoupResult.log`.

    Memory and precision: the soup is a running fp32 average; each candidate `soup + (x - soup) / (k + 1)` is
    computed group of tensors by group of tensors straight into the target (no second full copy). On accept,
    the ingredient is streamed again to update the fp32 soup with `running_mean_` rather than copying the
    candidate back from the target: one more read of the ingredient buys full fp32 precision for bf16/fp16
    models. Integer tensors come from the best ingredient. The target ends holding the final soup, whose
    score is `selection_score`. See [`SoupMethod.__call__`] for the arguments.

    `min_gain` > 0 accepts an ingredient only when the candidate beats the current soup by more than that
    margin, so a gain too small for the selection rows to support is not taken (0, the default, is the
    paper's strict `>`).

    Raises:
        InvalidSettingError: if `score` or `individual_scores` is missing, `weights` is given, `min_gain` is
            negative, or every individual score is NaN (there is nothing to choose by).
    """
    refuse_weights("greedy", weights)
    if score is None:
        raise InvalidSettingError(
            "The greedy soup needs `score`, a function scoring the weights in the model."
        )
    scores = _check_individual_scores(individual_scores, len(ingredients))
    if not (is_number(min_gain) and min_gain >= 0):
        raise InvalidSettingError(f"min_gain must be a number >= 0, got {min_gain!r}.")
    if all(math.isnan(value) for value in scores):
        raise InvalidSettingError(
            "Every ingredient scores NaN on the selection split, so the greedy soup has nothing to choose by: "
            "check the split's labels (missing or constant labels give NaN correlations) or the metric."
        )
    order = sorted(range(len(ingredients)), key=lambda i: _rank(scores[i]), reverse=True)
    # `sorted(reverse=True)` keeps equal keys in their original order, as a stable descending sort should.

    layout = TargetLayout(target)
    soup = layout.fp32_soup(reuse_target=False)
    best = order[0]
    for names, values in layout.stream(ingredients[best], copy_others=True):
        running_mean_([soup[name] for name in names], values, 0)
    current = scores[best]
    selected = [best]
    log = [SoupStep(best, ingredients[best].name, current, None, True)]
    logger.info("Greedy soup: %s", log[0].describe())

    for index in tqdm(order[1:], desc="greedy soup", unit="candidate"):
        ingredient = ingredients[index]
        weight = 1.0 / (len(selected) + 1)
        for names, values in layout.stream(ingredient, copy_others=False):
            _write_candidate([target[name] for name in names], [soup[name] for name in names], values, weight)
        candidate_score = float(score())
        accepted = _rank(candidate_score) > _rank(current) + min_gain
        step = SoupStep(index, ingredient.name, candidate_score, current, accepted, min_gain)
        log.append(step)
        logger.info("Greedy soup: %s", step.describe())
        if accepted:
            for names, values in layout.stream(ingredient, copy_others=False):
                running_mean_([soup[name] for name in names], values, len(selected))
            selected.append(index)
            current = candidate_score

    layout.write(soup)
    logger.info(
        "Greedy soup of %d/%d ingredients %s scores %.4f.", len(selected), len(order), selected, current
    )
    return SoupResult(
        method="greedy",
        selected=selected,
        weights=[1.0 / len(selected)] * len(selected),
        log=log,
        selection_score=current,
    )

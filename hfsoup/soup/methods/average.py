"""The uniform and weighted soups: one pass over each selected ingredient into an fp32 running sum."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import torch
from huggingface_hub.utils import tqdm

from ...averaging import add_scaled_, running_mean_
from ...errors import InvalidSettingError
from .base import SoupIngredient, SoupResult, is_number, refuse_weights
from .layout import TargetLayout

__all__ = ["normalized_weights", "uniform_soup", "weighted_soup"]

logger = logging.getLogger(__name__)


def normalized_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    if weights is None:
        raise InvalidSettingError(
            "Soup method 'weighted' needs weights: one number >= 0 per ingredient, e.g. weights=[0.5, 0.3, 0.2]."
        )
    weights = list(weights)
    if len(weights) != count:
        raise InvalidSettingError(
            f"Got {len(weights)} soup weights for {count} ingredients; give exactly one weight per ingredient."
        )
    bad = [w for w in weights if not (is_number(w) and math.isfinite(w) and w >= 0)]
    if bad:
        raise InvalidSettingError(f"Soup weights must be finite numbers >= 0; got {bad[0]!r} in {weights}.")
    total = math.fsum(weights)
    if total <= 0:
        raise InvalidSettingError(f"Soup weights must have a positive sum; got {weights}.")
    return [w / total for w in weights]


def _average_into(
    method: str,
    ingredients: Sequence[SoupIngredient],
    target: dict[str, torch.Tensor],
    selected: list[int],
    weights: list[float],
    fold: Callable[[list[torch.Tensor], list[torch.Tensor], int], None],
    score: Callable[[], float] | None,
) -> SoupResult:
    """Fold the `selected` ingredients into an fp32 soup with `fold(soup, values, position)`, then write it."""
    layout = TargetLayout(target)
    soup = layout.fp32_soup(reuse_target=True)
    for position, index in enumerate(tqdm(selected, desc=f"{method} soup", unit="ingredient")):
        for names, values in layout.stream(ingredients[index], copy_others=position == 0):
            fold([soup[name] for name in names], values, position)
    layout.write(soup)
    logger.info("%s soup of ingredients %s written into the model.", method.capitalize(), selected)
    selection_score = None if score is None else float(score())
    return SoupResult(method, selected, weights, selection_score=selection_score)


@torch.no_grad()
def uniform_soup(
    ingredients: Sequence[SoupIngredient],
    target: dict[str, torch.Tensor],
    *,
    score: Callable[[], float] | None = None,
    individual_scores: Sequence[float] | None = None,
    weights: Sequence[float] | None = None,
) -> SoupResult:
    """The plain average of all ingredients (Wortsman et al. 2022, uniform soup), as a running fp32 mean.

    Integer tensors are copied from the first ingredient. `individual_scores` is not used; `score`, if given,
    scores the final soup once. See [`SoupMethod.__call__`] for the arguments.
    """
    refuse_weights("uniform", weights)
    size = len(ingredients)
    return _average_into(
        "uniform", ingredients, target, list(range(size)), [1.0 / size] * size, running_mean_, score
    )


@torch.no_grad()
def weighted_soup(
    ingredients: Sequence[SoupIngredient],
    target: dict[str, torch.Tensor],
    *,
    score: Callable[[], float] | None = None,
    individual_scores: Sequence[float] | None = None,
    weights: Sequence[float] | None = None,
) -> SoupResult:
    """`sum_i w_i * ingredient_i` with the given weights, normalised to sum to 1.

    The weights (one per ingredient, finite, >= 0, with a positive sum) are divided by their sum, so
    `[2, 1, 1]` means `[0.5, 0.25, 0.25]`. Ingredients of weight 0 are not read and are left out of
    `selected`; integer tensors are copied from the first ingredient of positive weight. `score`, if given,
    scores the final soup once. See [`SoupMethod.__call__`] for the arguments.

    Raises:
        InvalidSettingError: if `weights` is missing, of the wrong length, negative, not finite or sums to 0.
    """
    normalized = normalized_weights(weights, len(ingredients))
    selected = [index for index, weight in enumerate(normalized) if weight > 0]
    chosen = [normalized[index] for index in selected]

    def fold(soup: list[torch.Tensor], values: list[torch.Tensor], position: int) -> None:
        add_scaled_(soup, values, chosen[position])

    return _average_into("weighted", ingredients, target, selected, chosen, fold, score)

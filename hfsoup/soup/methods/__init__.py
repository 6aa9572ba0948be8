"""Soup methods in a registry: uniform, weighted, greedy, exhaustive, learned and Model Stock soups of fine-tunes.

Every method writes its soup in place into `target`, the tensors of one live model, and keeps the soup as a
running average in fp32, so peak memory is the model plus one fp32 copy of its floating-point tensors (none
for the uniform and weighted soups of an fp32 model) plus one group of streamed tensors (about 64 MiB),
whatever the number of ingredients (see `layout.py`). The learned soup also holds the model's gradient.

All methods share one signature (see [`SoupMethod.__call__`]); no method scores anything itself: each calls
the `score` function it is given, which scores the weights currently inside the target. A `score` with a
keyword `beat` may stop a scoring pass early (the subset search uses it); the others call it plainly. The
learned soup descends the selection loss through the `gradient` it is given, which runs the model on the
weights inside the target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ...errors import InvalidSettingError, UnknownNameError
from .average import uniform_soup, weighted_soup
from .base import SOUPS_PAPER, SoupIngredient, SoupResult, SoupStep, SubsetScore
from .exhaustive import check_count, exhaustive_soup
from .greedy import greedy_soup
from .layout import load_into
from .learned import LearnedSettings, SelectionGradient, learned_soup
from .model_stock import MODEL_STOCK_PAPER, model_stock_soup

__all__ = [
    "SOUPS_PAPER",
    "SOUP_METHODS",
    "LearnedSettings",
    "SelectionGradient",
    "SoupIngredient",
    "SoupMethod",
    "SoupResult",
    "SoupStep",
    "SubsetScore",
    "get_method",
    "load_into",
]


@dataclass(frozen=True)
class SoupMethod:
    """A soup method of the registry; its name, paper and description flow into the model card.

    Args:
        name: the registry name, as given to `--method`.
        paper: a link to the paper the method comes from.
        description: one line saying what the method does.
        function: the implementation, called by [`__call__`].
        check_count: refuses a number of ingredients the method cannot take, before any weight is read
            (the pipeline calls it first); the default takes any number.
        chooses: whether the method chooses its mix by the held-out score (greedy, exhaustive), so that it
            can fall back to a single ingredient; a fixed mix (uniform, weighted) cannot.
        fits: whether the method fits its mix by gradient descent on the selection loss (learned), so that it
            takes `gradient` and `settings`.
        needs_base: whether the method takes the ingredients' common `base` (model_stock).
        takes_min_gain: whether the method takes `min_gain`, the margin a candidate must win by (greedy).
    """

    name: str
    paper: str
    description: str
    function: Callable[..., SoupResult] = field(repr=False)
    check_count: Callable[[int], None] = field(default=lambda count: None, repr=False)
    chooses: bool = False
    fits: bool = False
    needs_base: bool = False
    takes_min_gain: bool = False

    def __call__(
        self,
        ingredients: Sequence[SoupIngredient],
        target: dict[str, torch.Tensor],
        *,
        score: Callable[..., float | None] | None = None,
        individual_scores: Sequence[float] | None = None,
        weights: Sequence[float] | None = None,
        gradient: SelectionGradient | None = None,
        settings: LearnedSettings | None = None,
        base: SoupIngredient | None = None,
        min_gain: float = 0.0,
    ) -> SoupResult:
        """Make the soup and write it into `target`. Every method takes the same arguments.

        Args:
            ingredients: the ingredients, each with `.name` and `.tensors()` streaming its tensors.
            target: the live model's tensors (e.g. `dict(model.state_dict())`), overwritten in place with
                the soup: floating-point tensors are averaged, integer tensors copied from one ingredient.
            score: scores the weights currently in the target, higher is better. Needed by `greedy` and
                `exhaustive`; the other methods, if given it, score their final soup once into
                `selection_score`. If it has a keyword `beat`, `exhaustive` calls `score(beat=x)`, which may
                return `None` instead of a score only when the weights score `<= x`.
            individual_scores: each ingredient's own score with the same `score` (needed by `greedy`; spares
                `exhaustive` scoring the single ingredients again; ignored by the others).
            weights: one weight per ingredient, for `weighted` only.
            gradient: the selection loss and its gradient of the weights in the target, batch by batch (see
                [`SelectionGradient`]), for `learned` only (ignored by the others).
            settings: how `learned` fits its coefficients (see [`LearnedSettings`]; ignored by the others).
            base: the model the ingredients were fine-tuned from, for `model_stock` (ignored by the others).
            min_gain: for `greedy`, the margin by which a candidate must beat the soup (0: the paper's rule).

        Returns:
            The [`SoupResult`]: which ingredients, with which weights, and the decisions taken.

        Raises:
            InvalidSettingError: if an argument the method needs is missing or invalid, or the method takes
                fewer ingredients (`exhaustive`: at most 12).
            IncompatibleIngredientsError: if an ingredient's tensors do not match the target's.

        Example:
            ```python
            >>> target = dict(model.state_dict())
            >>> result = get_method("greedy")(ingredients, target, score=score, individual_scores=scores)
            >>> result.selected, result.selection_score
            ([2, 0], 0.871)
            ```
        """
        if not ingredients:
            raise InvalidSettingError("A soup needs at least one ingredient; none were given.")
        self.check_count(len(ingredients))
        fitting = {"gradient": gradient, "settings": settings} if self.fits else {}
        if self.needs_base:
            fitting["base"] = base
        if self.takes_min_gain:
            fitting["min_gain"] = min_gain
        return self.function(
            ingredients, target, score=score, individual_scores=individual_scores, weights=weights, **fitting
        )


SOUP_METHODS: dict[str, SoupMethod] = {
    method.name: method
    for method in (
        SoupMethod(
            "uniform", SOUPS_PAPER, "The plain average of the weights of all ingredients.", uniform_soup
        ),
        SoupMethod(
            "weighted",
            SOUPS_PAPER,
            "A weighted average of the ingredients' weights, with given weights normalised to sum to 1.",
            weighted_soup,
        ),
        SoupMethod(
            "greedy",
            SOUPS_PAPER,
            "Add ingredients best-first, keeping each only if the soup's held-out score strictly improves.",
            greedy_soup,
            chooses=True,
            takes_min_gain=True,
        ),
        SoupMethod(
            "exhaustive",
            SOUPS_PAPER,
            "Practitioners' exhaustive search over the paper's uniform soups: score the uniform soup of every "
            "non-empty subset of the ingredients (at most 12) and keep the best.",
            exhaustive_soup,
            check_count,
            chooses=True,
        ),
        SoupMethod(
            "learned",
            SOUPS_PAPER,
            "Mixing coefficients (a convex combination, one per ingredient or per layer) fitted by gradient "
            "descent on the selection split's loss, starting from the uniform soup.",
            learned_soup,
            fits=True,
        ),
        SoupMethod(
            "model_stock",
            MODEL_STOCK_PAPER,
            "Model Stock: per tensor, the ingredients' mean pulled toward the base by the mean angle of their "
            "updates, t * mean + (1 - t) * base with t = N c / (1 + (N - 1) c).",
            model_stock_soup,
            needs_base=True,
        ),
    )
}


def get_method(name: str) -> SoupMethod:
    """The soup method registered under `name`.

    Raises:
        UnknownNameError: if no method has that name; the message lists the valid names.

    Example:
        ```python
        >>> get_method("uniform").paper
        'https://arxiv.org/abs/2203.05482'
        ```
    """
    if name not in SOUP_METHODS:
        raise UnknownNameError(f"Unknown soup method {name!r}; choose one of: {', '.join(SOUP_METHODS)}.")
    return SOUP_METHODS[name]

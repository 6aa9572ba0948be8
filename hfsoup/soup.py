"""Soup methods in a registry: uniform, weighted and greedy averages of fine-tuned ingredients.

Every method writes its soup in place into `target`, the tensors of one live model (for instance
`dict(model.state_dict())`, whose tensors share storage with the model), so the candidate weights of a greedy
soup are scored in that same model. Ingredients stream their tensors one at a time and the soup is kept as a
running average in fp32, so peak memory is the model plus one fp32 copy of its floating-point tensors (none
for the uniform and weighted soups of an fp32 model) plus one group of streamed tensors (about 64 MiB),
whatever the number of ingredients.

All methods share one signature (see [`SoupMethod.__call__`]); this module never scores anything itself: it
calls the `score` function it is given, which scores the weights currently inside the target.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from huggingface_hub.utils import tqdm

from .averaging import add_scaled_, lerp_, running_mean_
from .errors import IncompatibleIngredientsError, InvalidSettingError, UnknownNameError

logger = logging.getLogger(__name__)

__all__ = [
    "SOUP_METHODS",
    "SoupIngredient",
    "SoupMethod",
    "SoupResult",
    "SoupStep",
    "get_method",
    "load_into",
]

SOUPS_PAPER = "https://arxiv.org/abs/2203.05482"
# Tensors are streamed in groups of about this many bytes, so each group is averaged with one fused foreach
# op; the extra memory this costs is bounded by the group, never by the number of ingredients.
_CHUNK_BYTES = 64 * 2**20


class SoupIngredient(Protocol):
    """What a soup needs of an ingredient (implemented by `hfsoup.ingredients.Ingredient`)."""

    name: str

    def tensors(self, names: Iterable[str] | None = None) -> Iterator[tuple[str, torch.Tensor]]: ...


@dataclass
class SoupStep:
    """One decision of a greedy soup.

    Args:
        index: the ingredient's position in the list given to the method.
        name: the ingredient's display name.
        candidate_score: the selection score of the soup with this ingredient added (for the first ingredient,
            its individual score).
        score_before: the selection score of the soup before this step (`None` for the first ingredient).
        accepted: whether the ingredient joined the soup.
    """

    index: int
    name: str
    candidate_score: float
    score_before: float | None
    accepted: bool

    def describe(self) -> str:
        """The step as one line of text, as it is logged."""
        who = f"#{self.index} {self.name!r}"
        if self.score_before is None:
            return f"start with {who}: best individual score {self.candidate_score:.4f}"
        if self.accepted:
            return f"accept {who}: candidate soup scores {self.candidate_score:.4f} > {self.score_before:.4f}"
        tie = " (a tie is not an improvement)" if self.candidate_score == self.score_before else ""
        return (
            f"reject {who}: candidate soup scores {self.candidate_score:.4f}, "
            f"not > {self.score_before:.4f}{tie}"
        )


@dataclass
class SoupResult:
    """What a soup method did; the soup itself is in the target.

    Args:
        method: the method's registry name.
        selected: indices of the ingredients in the soup, in the order they were added.
        weights: the weight of each selected ingredient (same order), summing to 1.
        log: every accept and reject of a greedy soup (empty for methods that choose nothing).
        selection_score: the soup's selection score, if it was computed.
    """

    method: str
    selected: list[int]
    weights: list[float]
    log: list[SoupStep] = field(default_factory=list)
    selection_score: float | None = None


class _Layout:
    """Which tensors of the target a soup writes, and the streaming of an ingredient's tensors into them.

    Tied weights (target names sharing one tensor) are handled once, under the first name, whichever of the
    names the ingredient's files use.
    """

    def __init__(self, target: dict[str, torch.Tensor]):
        self.target = target
        self.canonical: dict[str, str] = {}
        first: dict[tuple, str] = {}
        for name, tensor in target.items():
            storage = tensor.untyped_storage().data_ptr()
            key = (storage, tensor.storage_offset(), tensor.shape, tensor.stride(), tensor.dtype)
            self.canonical[name] = first.setdefault(key, name)
        self.names = list(first.values())
        self.floats = [name for name in self.names if target[name].is_floating_point()]

    def fp32_soup(self, *, reuse_target: bool) -> dict[str, torch.Tensor]:
        """Zeroed fp32 accumulators next to the target's tensors; with `reuse_target`, fp32 ones serve as such."""
        soup = {}
        for name in self.floats:
            held = self.target[name]
            soup[name] = (
                held
                if reuse_target and held.dtype == torch.float32
                else torch.empty_like(held, dtype=torch.float32)
            )
        for tensor in soup.values():
            tensor.zero_()
        return soup

    def write(self, soup: dict[str, torch.Tensor]) -> None:
        """Copy the soup into the target, cast to the target's dtypes."""
        for name, tensor in soup.items():
            if tensor is not self.target[name]:
                self.target[name].copy_(tensor)

    def stream(
        self, ingredient: SoupIngredient, *, copy_others: bool
    ) -> Iterator[tuple[list[str], list[torch.Tensor]]]:
        """The ingredient's floating-point tensors in groups of about `_CHUNK_BYTES`, as (names, tensors).

        Each group's target tensors are on one device, as the fused foreach ops want.

        With `copy_others`, its other tensors (integer buffers) are copied into the target on the way.

        Raises:
            IncompatibleIngredientsError: if a tensor's shape differs from the target's or one is missing.
        """
        seen: set[str] = set()
        names: list[str] = []
        values: list[torch.Tensor] = []
        size = 0
        for file_name, tensor in ingredient.tensors():
            name = self.canonical.get(file_name)
            if name is None or name in seen:
                continue
            seen.add(name)
            held = self.target[name]
            if tensor.shape != held.shape:
                raise IncompatibleIngredientsError(
                    f"Ingredient {ingredient.name!r} has {file_name!r} of shape {tuple(tensor.shape)} but the "
                    f"model expects {tuple(held.shape)}; soup only fine-tunes of the same architecture."
                )
            if not held.is_floating_point():
                if copy_others:
                    held.copy_(tensor)
                continue
            if names and held.device != self.target[names[0]].device:
                yield names, values
                names, values, size = [], [], 0
            names.append(name)
            values.append(tensor)
            size += tensor.nbytes
            if size >= _CHUNK_BYTES:
                yield names, values
                names, values, size = [], [], 0
        if names:
            yield names, values
        if len(seen) < len(self.names):
            missing = [name for name in self.names if name not in seen]
            raise IncompatibleIngredientsError(
                f"Ingredient {ingredient.name!r} lacks {len(missing)} tensor(s) the model holds "
                f"(first: {missing[:3]}); soup only fine-tunes of the same architecture."
            )


@torch.no_grad()
def load_into(target: dict[str, torch.Tensor], ingredient: SoupIngredient) -> None:
    """Write one ingredient's weights into the target, in place and cast to the target's dtypes.

    The pipeline uses it to score each ingredient in turn in the same model.

    Args:
        target: the live model's tensors, e.g. `dict(model.state_dict())`.
        ingredient: the ingredient whose weights to load.

    Raises:
        IncompatibleIngredientsError: if the ingredient misses a tensor of the target or has another shape.

    Example:
        ```python
        >>> target = dict(model.state_dict())
        >>> for ingredient in ingredients:
        ...     load_into(target, ingredient)
        ...     scores.append(score())
        ```
    """
    layout = _Layout(target)
    for names, values in layout.stream(ingredient, copy_others=True):
        for name, value in zip(names, values, strict=True):
            target[name].copy_(value)


def _refuse_weights(method: str, weights: Sequence[float] | None) -> None:
    if weights is not None:
        raise InvalidSettingError(
            f"Soup method {method!r} takes no weights; use method 'weighted' to give each ingredient a weight."
        )


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _normalized_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    if weights is None:
        raise InvalidSettingError(
            "Soup method 'weighted' needs weights: one number >= 0 per ingredient, e.g. weights=[0.5, 0.3, 0.2]."
        )
    weights = list(weights)
    if len(weights) != count:
        raise InvalidSettingError(
            f"Got {len(weights)} soup weights for {count} ingredients; give exactly one weight per ingredient."
        )
    bad = [w for w in weights if not (_is_number(w) and math.isfinite(w) and w >= 0)]
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
    layout = _Layout(target)
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
    _refuse_weights("uniform", weights)
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
    normalized = _normalized_weights(weights, len(ingredients))
    selected = [index for index, weight in enumerate(normalized) if weight > 0]
    chosen = [normalized[index] for index in selected]

    def fold(soup: list[torch.Tensor], values: list[torch.Tensor], position: int) -> None:
        add_scaled_(soup, values, chosen[position])

    return _average_into("weighted", ingredients, target, selected, chosen, fold, score)


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
    bad = [s for s in individual_scores if not _is_number(s)]
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
) -> SoupResult:
    """The greedy soup of Wortsman et al. 2022 (Recipe 1): add ingredients best-first while the score improves.

    Ingredients are sorted by `individual_scores`, best first (a stable sort: ties keep the given order; NaN
    counts as the worst score). The soup starts as the best ingredient, whose individual score is its score,
    so no single ingredient is scored again. Each next ingredient is tried in turn: the uniform average of the
    soup and it is written into the target and scored, and it is kept only if that candidate scores strictly
    better (`>`) than the current soup. A tie rejects the ingredient. This follows the authors' released code
    (`mlfoundations/model-soups`, `main.py`); the paper's pseudo-code writes `>=`, which would also add
    ingredients that leave the score unchanged. Every decision is logged and recorded in `SoupResult.log`.

    Memory and precision: the soup is a running fp32 average; each candidate `soup + (x - soup) / (k + 1)` is
    computed group of tensors by group of tensors straight into the target (no second full copy). On accept,
    the ingredient is streamed again to update the fp32 soup with `running_mean_` rather than copying the
    candidate back from the target: one more read of the ingredient buys full fp32 precision for bf16/fp16
    models. Integer tensors come from the best ingredient. The target ends holding the final soup, whose
    score is `selection_score`. See [`SoupMethod.__call__`] for the arguments.

    Raises:
        InvalidSettingError: if `score` or `individual_scores` is missing, or `weights` is given.
    """
    _refuse_weights("greedy", weights)
    if score is None:
        raise InvalidSettingError(
            "The greedy soup needs `score`, a function scoring the weights in the model."
        )
    scores = _check_individual_scores(individual_scores, len(ingredients))
    order = sorted(range(len(ingredients)), key=lambda i: _rank(scores[i]), reverse=True)
    # `sorted(reverse=True)` keeps equal keys in their original order, as a stable descending sort should.

    layout = _Layout(target)
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
        accepted = _rank(candidate_score) > _rank(current)
        step = SoupStep(index, ingredient.name, candidate_score, current, accepted)
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


@dataclass(frozen=True)
class SoupMethod:
    """A soup method of the registry; its name, paper and description flow into the model card.

    Args:
        name: the registry name, as given to `--method`.
        paper: a link to the paper the method comes from.
        description: one line saying what the method does.
        function: the implementation, called by [`__call__`].
    """

    name: str
    paper: str
    description: str
    function: Callable[..., SoupResult] = field(repr=False)

    def __call__(
        self,
        ingredients: Sequence[SoupIngredient],
        target: dict[str, torch.Tensor],
        *,
        score: Callable[[], float] | None = None,
        individual_scores: Sequence[float] | None = None,
        weights: Sequence[float] | None = None,
    ) -> SoupResult:
        """Make the soup and write it into `target`. Every method takes the same arguments.

        Args:
            ingredients: the ingredients, each with `.name` and `.tensors()` streaming its tensors.
            target: the live model's tensors (e.g. `dict(model.state_dict())`), overwritten in place with
                the soup: floating-point tensors are averaged, integer tensors copied from one ingredient.
            score: scores the weights currently in the target, higher is better. Needed by `greedy`; the
                other methods, if given it, score their final soup once into `selection_score`.
            individual_scores: each ingredient's own score with the same `score` (needed by `greedy`,
                ignored by the others).
            weights: one weight per ingredient, for `weighted` only.

        Returns:
            The [`SoupResult`]: which ingredients, with which weights, and the decisions taken.

        Raises:
            InvalidSettingError: if an argument the method needs is missing or invalid.
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
        return self.function(
            ingredients, target, score=score, individual_scores=individual_scores, weights=weights
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

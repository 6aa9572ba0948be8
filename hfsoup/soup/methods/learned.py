"""The learned soup (Wortsman et al. 2022): mixing coefficients fitted by gradient descent on the selection loss.

The soup is `theta = sum_i alpha_i * theta_i`, with `alpha = softmax(z)` over the ingredients (one row of logits
`z` for the whole model, or one row per tensor group with `per_layer`), so its weights are always a convex
combination of the ingredients' and the fit starts from the uniform soup (`z = 0`). The loss `L(theta)` is the
task's loss on batches of the selection split (cross-entropy, or mean squared error for a regression task).

Memory: the paper's code stacks every ingredient in memory. Here `dL/dalpha_i` (per group `k`: `dL/dalpha_ki`) is
the dot product of the loss gradient with respect to the soup's weights with ingredient `i`'s weights (of group
`k`), so a step (1) streams the ingredients one at a time into a weighted running sum, the soup, (2) runs one
forward and backward pass of the model on a batch, then (3) streams the ingredients again for the dot products,
and (4) maps `dL/dalpha` to `dL/dz` through the softmax's Jacobian, `alpha * (g - <alpha, g>)`, for an Adam
step on `z`. Peak memory is the model, its gradient and one streamed group of tensors, whatever the number of
ingredients.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from huggingface_hub.utils import tqdm

from ...averaging import add_scaled_
from ...errors import InvalidSettingError
from .base import SoupIngredient, SoupResult, refuse_weights
from .layout import TargetLayout

__all__ = [
    "ALL",
    "LearnedSettings",
    "SelectionGradient",
    "SoupMixer",
    "learned_soup",
    "logit_gradient",
    "tensor_groups",
]

logger = logging.getLogger(__name__)

ALL = "all"
"""The one tensor group of a learned soup without `per_layer`: one coefficient per ingredient."""


@dataclass(frozen=True)
class LearnedSettings:
    """How a learned soup fits its coefficients.

    Args:
        per_layer: one coefficient per ingredient and tensor group (see [`tensor_groups`]) instead of one per
            ingredient: more freedom to fit the selection split, and more risk of over-fitting a small one.
        epochs: passes over the selection split, in batches (of the recipe's `batch_size`), one Adam step per
            batch. The default, 5, is 20 steps on MRPC's selection half (204 rows, batches of 64).
        learning_rate: Adam's learning rate on the softmax logits. Adam moves each logit by about this much per
            step, so the default 0.5 can shift the logits by up to about 10 over 20 steps: enough for the fit to
            leave the uniform soup and concentrate on the few ingredients that lower the selection loss. Chosen
            by measurement (`benchmarks/glue_results.py --learned-rates 0.5`, RESULTS.md "Real results on
            GLUE"): on five GLUE tasks, 0.5 ended within 0.005 of the best single ingredient on four, where the
            former default 0.05 barely left the uniform soup (MRPC -0.026, RTE -0.022 against the best single).
        coefficients: recorded coefficients, group -> one per ingredient (what `SoupResult.coefficients`
            holds): the soup is rebuilt from them without fitting, as a replay of `soup.yaml` does.
    """

    per_layer: bool = False
    epochs: int = 5
    learning_rate: float = 0.5
    coefficients: dict[str, list[float]] | None = None


class SelectionGradient(Protocol):
    """The loss of the weights now in the target on one batch of the selection split, and its gradient.

    `len()` is the number of batches per epoch; a call returns the batch's mean loss and the gradient with
    respect to each trainable floating-point tensor of the target, by its name in the target. The batches of
    an epoch are a function of `(epoch, batch)` alone, so a fit is deterministic (see
    `hfsoup.eval.SelectionLoss`).
    """

    def __len__(self) -> int: ...

    def __call__(self, epoch: int, batch: int) -> tuple[float, dict[str, torch.Tensor]]: ...


@dataclass
class FitEpoch:
    """One epoch of a learned soup's fit: its mean batch loss and each ingredient's share of the soup after it."""

    epoch: int
    epochs: int
    loss: float
    shares: list[float]

    def describe(self) -> str:
        """The epoch as one line of text, as it is logged and shown in the card's soup log."""
        shares = ", ".join(f"#{index} {share:.4f}" for index, share in enumerate(self.shares))
        return f"epoch {self.epoch}/{self.epochs}: mean batch loss {self.loss:.4f}; coefficients {shares}"


def tensor_groups(names: Iterable[str]) -> dict[str, str]:
    """The group of each tensor name for per-layer coefficients: embeddings, each layer, the head.

    A name with a numeric component belongs to the group named by its prefix up to that component
    (`bert.encoder.layer.3`: one group per transformer layer). Any other name of the backbone (whose first
    component also starts numbered names, e.g. `bert`) belongs to the group of its first two components
    (`bert.embeddings`, `bert.pooler`); any other name to its first component (`classifier`, the task head).

    Example:
        ```python
        >>> tensor_groups(["bert.embeddings.LayerNorm.weight", "bert.encoder.layer.0.output.dense.bias",
        ...                "classifier.weight"])
        {'bert.embeddings.LayerNorm.weight': 'bert.embeddings', 'bert.encoder.layer.0.output.dense.bias':
        'bert.encoder.layer.0', 'classifier.weight': 'classifier'}
        ```
    """
    names = list(names)
    numbered = {name: re.search(r"^(.*?\.\d+)(\.|$)", name) for name in names}
    backbones = {name.split(".")[0] for name, match in numbered.items() if match}
    groups = {}
    for name in names:
        parts = name.split(".")
        if numbered[name]:
            groups[name] = numbered[name].group(1)
        elif parts[0] in backbones and len(parts) > 2:
            groups[name] = ".".join(parts[:2])
        else:
            groups[name] = parts[0]
    return groups


class SoupMixer:
    """The soup `sum_i alpha[group, i] * theta_i`, streamed into the target, and the dot products of a gradient.

    Args:
        ingredients: the ingredients, each streaming its tensors.
        target: the live model's tensors; the soup is accumulated in them when they are fp32, else in an fp32
            copy written into them.
        per_layer: one group per [`tensor_groups`] group; otherwise the single group [`ALL`].
    """

    def __init__(
        self, ingredients: Sequence[SoupIngredient], target: dict[str, torch.Tensor], per_layer: bool
    ):
        self.ingredients = ingredients
        self.layout = TargetLayout(target)
        self.soup = self.layout.fp32_soup(reuse_target=True)
        grouping = tensor_groups(self.layout.floats) if per_layer else dict.fromkeys(self.layout.floats, ALL)
        self.groups = list(dict.fromkeys(grouping.values()))
        self.group_of = {name: self.groups.index(group) for name, group in grouping.items()}
        sizes = torch.zeros(len(self.groups), dtype=torch.float64)
        for name in self.layout.floats:
            sizes[self.group_of[name]] += target[name].numel()
        self.sizes = sizes

    def _by_group(self, names: list[str], values: list[torch.Tensor]):
        """The tensors of one streamed chunk, by group index: (group, names, values)."""
        chunks: dict[int, tuple[list[str], list[torch.Tensor]]] = {}
        for name, value in zip(names, values, strict=True):
            chunk = chunks.setdefault(self.group_of[name], ([], []))
            chunk[0].append(name)
            chunk[1].append(value)
        return [(group, *chunk) for group, chunk in chunks.items()]

    @torch.no_grad()
    def build(self, alpha: torch.Tensor) -> None:
        """Write the soup of coefficients `alpha` (groups x ingredients) into the target, one ingredient at a time.

        Integer tensors are copied from the first ingredient.
        """
        for tensor in self.soup.values():
            tensor.zero_()
        for index, ingredient in enumerate(self.ingredients):
            for names, values in self.layout.stream(ingredient, copy_others=index == 0):
                for group, chunk_names, chunk_values in self._by_group(names, values):
                    add_scaled_([self.soup[n] for n in chunk_names], chunk_values, float(alpha[group, index]))
        self.layout.write(self.soup)

    @torch.no_grad()
    def dots(self, grads: dict[str, torch.Tensor]) -> torch.Tensor:
        """`<gradient, theta_i>` per group and ingredient (groups x ingredients, float64), streaming each ingredient."""
        grads = {self.layout.canonical[name]: grad for name, grad in grads.items()}
        dots = torch.zeros(len(self.groups), len(self.ingredients), dtype=torch.float64)
        for index, ingredient in enumerate(self.ingredients):
            for names, values in self.layout.stream(ingredient, copy_others=False):
                for name, value in zip(names, values, strict=True):
                    grad = grads.get(name)
                    if grad is not None:
                        product = torch.dot(grad.reshape(-1).float(), value.reshape(-1).float())
                        dots[self.group_of[name], index] += float(product)
        return dots

    def shares(self, alpha: torch.Tensor) -> list[float]:
        """Each ingredient's share of the soup: its coefficients weighted by the groups' numbers of elements."""
        return ((self.sizes @ alpha) / self.sizes.sum()).tolist()


def logit_gradient(
    mixer: SoupMixer, logits: torch.Tensor, gradient: SelectionGradient, epoch: int, batch: int
) -> tuple[float, torch.Tensor]:
    """One batch's loss at the soup of `softmax(logits)` and its gradient with respect to the logits.

    Builds the soup into the target, takes the loss gradient with respect to its weights, streams the
    ingredients for `g = dL/dalpha` (their dot products with it), and returns `alpha * (g - <alpha, g>)`, the
    softmax's Jacobian applied to `g`, row by row.
    """
    alpha = torch.softmax(logits, dim=1)
    mixer.build(alpha)
    loss, grads = gradient(epoch, batch)
    g = mixer.dots(grads)
    del grads
    return loss, alpha * (g - (alpha * g).sum(dim=1, keepdim=True))


def _recorded(settings: LearnedSettings, mixer: SoupMixer) -> torch.Tensor:
    """The recorded coefficients as a (groups x ingredients) tensor, checked against this soup's groups."""
    recorded = settings.coefficients or {}
    if list(recorded) != mixer.groups:
        raise InvalidSettingError(
            f"The recorded learned-soup coefficients are for tensor groups {list(recorded)[:3]}... but this soup "
            f"has {mixer.groups[:3]}... (per_layer={settings.per_layer}); replay with the per-layer setting "
            "they were fitted with, or drop them to fit anew."
        )
    rows = [list(values) for values in recorded.values()]
    count = len(mixer.ingredients)
    if any(
        len(row) != count
        or not all(math.isfinite(v) and v >= 0 for v in row)
        or abs(math.fsum(row) - 1) > 1e-6
        for row in rows
    ):
        raise InvalidSettingError(
            f"Recorded learned-soup coefficients must be {count} numbers >= 0 summing to 1 per group, one per "
            "ingredient; the soup.yaml was edited or belongs to other ingredients: merge anew without it."
        )
    return torch.tensor(rows, dtype=torch.float64)


def learned_soup(
    ingredients: Sequence[SoupIngredient],
    target: dict[str, torch.Tensor],
    *,
    score: Callable[[], float] | None = None,
    individual_scores: Sequence[float] | None = None,
    weights: Sequence[float] | None = None,
    gradient: SelectionGradient | None = None,
    settings: LearnedSettings | None = None,
) -> SoupResult:
    """Fit the soup's mixing coefficients by Adam on the selection loss, from the uniform soup, and write the soup.

    Each epoch visits every batch of `gradient` once (one Adam step each, see [`logit_gradient`]); the soup of
    the final coefficients is written into the target. With `settings.coefficients` the soup is rebuilt from
    them, with no fitting and no call of `gradient`. `SoupResult.coefficients` holds the coefficients by group
    (`"all"` unless per layer) and `weights` each ingredient's share of the soup's parameters. `score`, if
    given, scores the final soup once; `individual_scores` is not used. See [`SoupMethod.__call__`] for the
    other arguments.

    Raises:
        InvalidSettingError: `weights` is given, `gradient` is missing when there is something to fit, the
            settings are out of range, or recorded coefficients do not fit the ingredients.
    """
    refuse_weights("learned", weights)
    settings = settings or LearnedSettings()
    if settings.epochs < 1 or not (math.isfinite(settings.learning_rate) and settings.learning_rate > 0):
        raise InvalidSettingError(
            f"A learned soup needs epochs >= 1 and a learning rate > 0; got {settings.epochs} and "
            f"{settings.learning_rate}."
        )
    mixer = SoupMixer(ingredients, target, settings.per_layer)
    log: list[FitEpoch] = []
    if settings.coefficients is not None:
        alpha = _recorded(settings, mixer)
        logger.info("Learned soup: rebuilt from the recorded coefficients, no fitting.")
    else:
        if gradient is None:
            raise InvalidSettingError(
                "The learned soup needs `gradient`, the selection loss's gradient of the weights in the model."
            )
        logits = torch.zeros(len(mixer.groups), len(ingredients), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.Adam([logits], lr=settings.learning_rate)
        batches = len(gradient)
        for epoch in tqdm(range(settings.epochs), desc="learned soup", unit="epoch"):
            losses = []
            for batch in range(batches):
                loss, logits.grad = logit_gradient(mixer, logits.detach(), gradient, epoch, batch)
                optimizer.step()
                losses.append(loss)
            shares = mixer.shares(torch.softmax(logits.detach(), dim=1))
            log.append(FitEpoch(epoch + 1, settings.epochs, math.fsum(losses) / len(losses), shares))
            logger.info("Learned soup: %s", log[-1].describe())
        alpha = torch.softmax(logits.detach(), dim=1)
    mixer.build(alpha)
    return SoupResult(
        method="learned",
        selected=list(range(len(ingredients))),
        weights=mixer.shares(alpha),
        log=log,
        selection_score=None if score is None else float(score()),
        coefficients={group: alpha[row].tolist() for row, group in enumerate(mixer.groups)},
    )

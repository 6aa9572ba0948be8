"""Model Stock (Jang et al. 2024, arXiv 2403.19522): the mean of the ingredients pulled toward their base.

Per tensor, with offsets `o_i = w_i - w_base` of N ingredients, `c` is the mean cosine of the N (N - 1) / 2 pairs
of offsets, `t = N c / (1 + (N - 1) c)`, and the soup is `t * mean(w_i) + (1 - t) * w_base`: the more the
fine-tunes disagree, the closer the soup stays to the base. This is mergekit's `model_stock` (whole tensors,
pairwise cosines averaged), computed by streaming: the mean pairwise cosine is
`(|sum_i u_i|^2 - sum_i |u_i|^2) / (N (N - 1))` with `u_i = o_i / |o_i|`, so each ingredient is read twice (its
offsets' norms, then its unit offsets and its weights, summed), never two ingredients at once. Memory: the
base, the sum and the unit sum in fp32. An offset of norm 0 counts as orthogonal to the others (mergekit clamps
the product of two norms at 1e-6 instead; they differ only for tensors that did not move).

A tensor the base lacks (a task head the pretrained model does not have), or holds in another shape, is
averaged plainly, and the log names it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from huggingface_hub.utils import tqdm

from ...errors import InvalidSettingError
from .base import SoupIngredient, SoupResult, refuse_weights
from .layout import TargetLayout

__all__ = ["MODEL_STOCK_PAPER", "model_stock_soup", "stock_ratio"]

logger = logging.getLogger(__name__)

MODEL_STOCK_PAPER = "https://arxiv.org/abs/2403.19522"


def stock_ratio(cosine: torch.Tensor | float, count: int) -> torch.Tensor | float:
    """`t = N c / (1 + (N - 1) c)`: the weight of the ingredients' mean against the base's."""
    return count * cosine / (1 + (count - 1) * cosine)


@torch.no_grad()
def model_stock_soup(
    ingredients: Sequence[SoupIngredient],
    target: dict[str, torch.Tensor],
    *,
    score: Callable[[], float] | None = None,
    individual_scores: Sequence[float] | None = None,
    weights: Sequence[float] | None = None,
    base: SoupIngredient | None = None,
) -> SoupResult:
    """Model Stock of the ingredients around `base`, written into `target`. See the module for the formula.

    Args:
        base: the model the ingredients were fine-tuned from (`--base`; a sweep's `init-<key>/` start).
        score: if given, scores the final soup once into `selection_score`.
        Others: see [`SoupMethod.__call__`].

    Raises:
        InvalidSettingError: no `base`, fewer than 2 ingredients, or `weights` given.
    """
    refuse_weights("model_stock", weights)
    if base is None:
        raise InvalidSettingError(
            "Soup method 'model_stock' needs the base the ingredients were fine-tuned from: pass --base "
            "(a sweep's init-<key>/ folder is its natural base)."
        )
    if len(ingredients) < 2:
        raise InvalidSettingError(
            "Soup method 'model_stock' needs at least 2 ingredients to measure their angle."
        )
    layout = TargetLayout(target)
    anchor = _base_tensors(layout, base)
    missing = [name for name in layout.floats if name not in anchor]
    if missing:
        logger.info(
            "model_stock: the base lacks %d tensor(s) (%s), averaged plainly",
            len(missing),
            ", ".join(missing[:4]),
        )
    count = len(ingredients)
    norms = {name: torch.zeros(count, dtype=torch.float64) for name in anchor}
    for position, ingredient in enumerate(tqdm(ingredients, desc="model_stock norms", unit="ingredient")):
        for names, values in layout.stream(ingredient, copy_others=False):
            for name, value in zip(names, values, strict=True):
                if name in anchor:
                    norms[name][position] = torch.linalg.vector_norm((value.float() - anchor[name]).double())
    total, units = (
        layout.fp32_soup(reuse_target=False),
        {name: torch.zeros_like(t) for name, t in anchor.items()},
    )
    for position, ingredient in enumerate(tqdm(ingredients, desc="model_stock soup", unit="ingredient")):
        for names, values in layout.stream(ingredient, copy_others=position == 0):
            for name, value in zip(names, values, strict=True):
                value = value.float()
                total[name] += value
                norm = float(norms[name][position]) if name in anchor else 0.0
                if norm > 0:
                    units[name] += (value - anchor[name]) / norm
    ratios = {}
    for name, summed in total.items():
        mean = summed / count
        if name not in anchor:
            total[name] = mean
            continue
        unit_norms = (norms[name] > 0).double().sum()
        cosine = (torch.linalg.vector_norm(units[name].double()) ** 2 - unit_norms) / (count * (count - 1))
        ratio = float(stock_ratio(cosine.clamp(-1, 1), count))
        ratios[name] = ratio
        total[name] = ratio * mean + (1 - ratio) * anchor[name]
    layout.write(total)
    if ratios:
        values = sorted(ratios.values())
        logger.info(
            "model_stock: t from %.3f to %.3f (median %.3f) over %d tensors", values[0], values[-1],
            values[len(values) // 2], len(values),
        )  # fmt: skip
    selection_score = None if score is None else float(score())
    return SoupResult(
        "model_stock", list(range(count)), [1.0 / count] * count, selection_score=selection_score
    )


def _base_tensors(layout: TargetLayout, base: SoupIngredient) -> dict[str, torch.Tensor]:
    """The base's floating-point tensors in fp32, by the target's names (a bare base's names lack the prefix)."""
    wanted = {}
    for name in layout.floats:
        wanted[name] = name
        wanted.setdefault(name.partition(".")[2], name)  # `bert.encoder...` is `encoder...` in a bare base
    anchor = {}
    for file_name, tensor in base.tensors():
        name = layout.canonical.get(file_name, wanted.get(file_name))
        if name in layout.floats and name not in anchor and tensor.shape == layout.target[name].shape:
            anchor[name] = tensor.to(layout.target[name].device, torch.float32)
    return anchor

"""Where ingredients sit relative to each other and to their base: norms, distances and angles of updates.

Everything is streamed: tensor `k` of every model, then `k + 1`, accumulating float64 dot products into a
Gram matrix, so each file is read once and at most one tensor per model is in memory. The compatibility
report uses the same machinery for its common-base distances.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from huggingface_hub.utils import tqdm

from ..errors import IncompatibleIngredientsError
from .ingredient import Ingredient

__all__ = ["Geometry", "accumulate_gram", "gram_distance", "pairwise_geometry", "zip_tensors"]


def zip_tensors(models: Sequence[Ingredient], names: Sequence[Sequence[str]]) -> Iterator[list[torch.Tensor]]:
    """Tensor `k` of every model, then `k + 1`: each model's files are opened once, one tensor each in memory."""
    for row in zip(*(model.tensors(own) for model, own in zip(models, names, strict=True)), strict=True):
        yield [tensor for _, tensor in row]


def accumulate_gram(gram: torch.Tensor, tensors: Sequence[torch.Tensor]) -> None:
    """Add the pairwise dot products of `tensors` (one per model, flattened, in float64) to `gram`."""
    vectors = [tensor.reshape(-1).to(torch.float64) for tensor in tensors]
    for i, vi in enumerate(vectors):
        for j in range(i, len(vectors)):
            gram[i, j] += vi @ vectors[j]
            gram[j, i] = gram[i, j]


def gram_distance(gram: torch.Tensor, i: int, j: int) -> float:
    """`||x_i - x_j||` from the Gram matrix of the vectors `x`."""
    return math.sqrt(max(float(gram[i, i] + gram[j, j] - 2 * gram[i, j]), 0.0))


@dataclass
class Geometry:
    """Where the ingredients sit around their base, measured over the backbone (heads excluded).

    Args:
        ingredients: the ingredients' display names (rows and columns of the matrices).
        base: the base's display name.
        tensors: how many backbone tensors were compared.
        parameters: how many numbers they hold.
        base_norm: `||base||`.
        update_norms: `||ingredient - base||` for each ingredient.
        distances: `||a - b||` between ingredients (equal to the distance between their updates).
        angles: the angle in degrees between updates `a - base` and `b - base`: near 90 for independent
            fine-tuning noise, smaller when the runs moved the same way.
    """

    ingredients: list[str]
    base: str
    tensors: int
    parameters: int
    base_norm: float
    update_norms: list[float]
    distances: list[list[float]]
    angles: list[list[float]]

    def to_text(self) -> str:
        """Tables of update norms, distances and angles, for the terminal."""
        width = max(10, *(len(name) + 2 for name in self.ingredients))

        def table(matrix: list[list[float]], fmt: str) -> list[str]:
            header = " " * width + "".join(name.rjust(width) for name in self.ingredients)
            rows = [
                name.ljust(width) + "".join(format(v, fmt).rjust(width) for v in row)
                for name, row in zip(self.ingredients, matrix, strict=True)
            ]
            return [header, *rows]

        norms = [
            f"{name.ljust(width)}{norm:{width}.4g}  ({100 * norm / self.base_norm:.2f}% of ||base||)"
            for name, norm in zip(self.ingredients, self.update_norms, strict=True)
        ]
        return "\n".join(
            [
                f"Geometry of {len(self.ingredients)} ingredients around {self.base} "
                f"({self.tensors} backbone tensors, {self.parameters:,} parameters; heads excluded)",
                f"||base|| = {self.base_norm:.4g}",
                "",
                "Update norms ||ingredient - base||:",
                *norms,
                "",
                "Distances ||a - b|| between ingredients:",
                *table(self.distances, ".4g"),
                "",
                "Angles between updates (degrees):",
                *table(self.angles, ".1f"),
            ]
        )


def pairwise_geometry(ingredients: list[Ingredient], base: Ingredient) -> Geometry:
    """Measure the ingredients' updates `ingredient - base`: norms, pairwise distances and angles.

    Streams the backbone tensors the ingredients and the base share (same shape, float), one tensor per model
    at a time, accumulating dot products in float64; classification heads are left out (the base has none).

    Args:
        ingredients: the fine-tuned models.
        base: the model they were fine-tuned from.

    Returns:
        A [`Geometry`]; `geometry.to_text()` renders it as tables.

    Raises:
        `IncompatibleIngredientsError`: the ingredients share no backbone tensor with the base.

    Example:
        ```python
        >>> geometry = pairwise_geometry(load_ingredients(["runs/seed1", "runs/seed2"]), load_ingredient("base"))
        >>> geometry.angles[0][1]
        87.3
        ```
    """
    models = [*ingredients, base]
    first = ingredients[0]
    keys = []
    for key, stored in first.body_tensor_names.items():
        shape = first.tensor_infos[stored].shape
        if first.tensor_infos[stored].is_float and all(
            key in m.body_tensor_names and m.tensor_infos[m.body_tensor_names[key]].shape == shape
            for m in models
        ):
            keys.append(key)
    if not keys:
        raise IncompatibleIngredientsError(
            f"the ingredients share no backbone tensor with the base {base.name}; give the model they were "
            "fine-tuned from as the base."
        )
    gram = torch.zeros(len(ingredients), len(ingredients), dtype=torch.float64)
    base_sq = 0.0
    names = [[m.body_tensor_names[key] for key in keys] for m in models]
    for row in tqdm(zip_tensors(models, names), total=len(keys), desc="Measuring updates", unit="tensor"):
        origin = row[-1].to(torch.float64)
        base_sq += float(origin.reshape(-1) @ origin.reshape(-1))
        accumulate_gram(gram, [tensor.to(torch.float64) - origin for tensor in row[:-1]])
    norms = [math.sqrt(gram[i, i]) for i in range(len(ingredients))]
    count = range(len(ingredients))
    angles = [
        [
            math.degrees(math.acos(max(-1.0, min(1.0, float(gram[i, j]) / (norms[i] * norms[j])))))
            if norms[i] * norms[j] > 0
            else float("nan")
            for j in count
        ]
        for i in count
    ]
    return Geometry(
        ingredients=[i.name for i in ingredients],
        base=base.name,
        tensors=len(keys),
        parameters=sum(math.prod(first.tensor_infos[first.body_tensor_names[k]].shape) for k in keys),
        base_norm=math.sqrt(base_sq),
        update_norms=norms,
        distances=[[gram_distance(gram, i, j) for j in count] for i in count],
        angles=angles,
    )

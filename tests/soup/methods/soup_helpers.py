"""Test ingredients and float64 references shared by the soup method tests (imported as `soup_helpers`)."""

from __future__ import annotations

import math

import torch

from hfsoup.soup.methods import load_into

# -- test data: ingredients over in-memory tensors, float64 references and a deterministic scorer --------


class MemoryIngredient:
    """An ingredient over a dict of tensors, streamed one at a time."""

    def __init__(self, name: str, tensors: dict[str, torch.Tensor]):
        self.name = name
        self.state = tensors

    def tensors(self, names=None):
        for name in self.state if names is None else names:
            yield name, self.state[name]


SHAPES = {"layer.weight": (4, 3), "layer.bias": (4,), "head.weight": (2, 5)}


def make_ingredients(count: int, seed: int = 0, dtype=torch.float32, spread=None) -> list[MemoryIngredient]:
    """`count` variants of a common centre (plus an integer buffer that differs between them)."""
    generator = torch.Generator().manual_seed(seed)
    centre = {name: torch.randn(shape, generator=generator) for name, shape in SHAPES.items()}
    ingredients = []
    for i in range(count):
        scale = 1.0 if spread is None else spread[i]
        tensors = {
            name: (c + scale * 0.3 * torch.randn(c.shape, generator=generator)).to(dtype)
            for name, c in centre.items()
        }
        tensors["position_ids"] = torch.arange(6) + 10 * i
        ingredients.append(MemoryIngredient(f"ft{i}", tensors))
    return ingredients


def make_target(ingredient, dtype=torch.float32) -> dict[str, torch.Tensor]:
    return {
        name: torch.zeros(t.shape, dtype=dtype if t.is_floating_point() else t.dtype)
        for name, t in ingredient.tensors()
    }


def float_tensors(ingredient) -> dict[str, torch.Tensor]:
    return {name: t for name, t in ingredient.tensors() if t.is_floating_point()}


def reference_average(ingredients, weights) -> dict[str, torch.Tensor]:
    """sum_i w_i * x_i in float64, for the floating-point tensors."""
    states = [float_tensors(ingredient) for ingredient in ingredients]
    return {
        name: sum(w * s[name].double() for w, s in zip(weights, states, strict=True)) for name in states[0]
    }


def assert_target_equals(target, reference, *, atol=1e-6, rtol=1e-6):
    for name, expected in reference.items():
        torch.testing.assert_close(target[name].double(), expected, atol=atol, rtol=rtol, msg=name)


class DistanceScorer:
    """A deterministic selection score of the weights in `target`: minus their float64 distance to `point`."""

    def __init__(self, target, point):
        self.target = target
        self.point = point
        self.calls = 0

    @staticmethod
    def of(state, point) -> float:
        return -math.sqrt(sum(float(((state[n].double() - p) ** 2).sum()) for n, p in point.items()))

    def __call__(self) -> float:
        self.calls += 1
        return self.of(self.target, self.point)


def individual_scores(ingredients, target, scorer) -> list[float]:
    """Score each ingredient in the target, as the pipeline does."""
    scores = []
    for ingredient in ingredients:
        load_into(target, ingredient)
        scores.append(scorer())
    scorer.calls = 0
    return scores

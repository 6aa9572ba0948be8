"""Tests of hfsoup.soup.methods.average: uniform and weighted soups against float64 references written here."""

from __future__ import annotations

import math

import pytest
import torch
from soup_helpers import (
    DistanceScorer,
    MemoryIngredient,
    assert_target_equals,
    float_tensors,
    make_ingredients,
    make_target,
    reference_average,
)

from hfsoup.errors import InvalidSettingError
from hfsoup.soup.methods import SoupResult, get_method
from hfsoup.soup.methods import layout as soup_module


def test_uniform_soup_equals_the_float64_average_and_copies_integers_from_the_first():
    ingredients = make_ingredients(4)
    target = make_target(ingredients[0])
    result = get_method("uniform")(ingredients, target)
    assert isinstance(result, SoupResult)
    assert result.selected == [0, 1, 2, 3] and result.weights == [0.25] * 4
    assert result.log == [] and result.selection_score is None
    assert_target_equals(target, reference_average(ingredients, [0.25] * 4))
    assert torch.equal(target["position_ids"], ingredients[0].state["position_ids"])


def test_uniform_soup_scores_the_final_soup_when_given_a_scorer():
    ingredients = make_ingredients(3)
    target = make_target(ingredients[0])
    scorer = DistanceScorer(target, float_tensors(ingredients[0]))
    result = get_method("uniform")(ingredients, target, score=scorer)
    assert scorer.calls == 1
    assert result.selection_score == scorer()


def test_weighted_soup_normalises_its_weights_and_skips_zero_weights():
    ingredients = make_ingredients(4, seed=1)
    target = make_target(ingredients[0])
    result = get_method("weighted")(ingredients, target, weights=[0, 2, 1, 1])
    assert result.selected == [1, 2, 3]
    assert result.weights == [0.5, 0.25, 0.25] and math.isclose(sum(result.weights), 1.0)
    assert_target_equals(target, reference_average(ingredients, [0, 0.5, 0.25, 0.25]))
    assert torch.equal(target["position_ids"], ingredients[1].state["position_ids"])


@pytest.mark.parametrize(
    ("weights", "fragment"),
    [
        (None, "needs weights"),
        ([1, 1], "2 soup weights for 3 ingredients"),
        ([1, -1, 1], "-1"),
        ([1, float("nan"), 1], "nan"),
        ([1, float("inf"), 1], "inf"),
        ([1, True, 1], "True"),
        ([1, "2", 1], "'2'"),
        ([0, 0, 0.0], "positive sum"),
    ],
)
def test_bad_weights_are_rejected_with_one_line(weights, fragment):
    ingredients = make_ingredients(3)
    target = make_target(ingredients[0])
    before = {name: t.clone() for name, t in target.items()}
    with pytest.raises(InvalidSettingError) as info:
        get_method("weighted")(ingredients, target, weights=weights)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert all(torch.equal(target[name], t) for name, t in before.items())  # validated before writing


def test_fp32_running_soup_of_bf16_ingredients_matches_float64():
    ingredients = make_ingredients(12, seed=2, dtype=torch.bfloat16)
    reference = reference_average(ingredients, [1 / 12] * 12)
    target = make_target(ingredients[0], dtype=torch.float32)
    get_method("uniform")(ingredients, target)
    assert_target_equals(target, reference, atol=1e-6, rtol=1e-6)
    # Into a bf16 model the fp32 soup is rounded once: within one bf16 step of the exact mean.
    target = make_target(ingredients[0], dtype=torch.bfloat16)
    get_method("uniform")(ingredients, target)
    for name, expected in reference.items():
        assert target[name].dtype == torch.bfloat16
        torch.testing.assert_close(target[name].double(), expected, atol=1e-6, rtol=2**-8)


def test_weighted_soup_in_small_groups_matches_one_group(monkeypatch):
    ingredients = make_ingredients(3, seed=3)
    whole = make_target(ingredients[0])
    get_method("weighted")(ingredients, whole, weights=[3, 2, 1])
    monkeypatch.setattr(soup_module, "_CHUNK_BYTES", 1)
    grouped = make_target(ingredients[0])
    get_method("weighted")(ingredients, grouped, weights=[3, 2, 1])
    assert all(torch.equal(whole[name], grouped[name]) for name in whole)


def test_ingredients_of_weight_zero_are_never_read():
    class Unreadable(MemoryIngredient):
        def tensors(self, names=None):
            raise AssertionError(f"{self.name} was read")

    ingredients = make_ingredients(2, seed=4)
    ingredients.insert(1, Unreadable("zero", {}))
    target = make_target(ingredients[0])

    result = get_method("weighted")(ingredients, target, weights=[1, 0, 3])

    assert result.selected == [0, 2] and result.weights == [0.25, 0.75]
    assert_target_equals(target, reference_average([ingredients[0], ingredients[2]], [0.25, 0.75]))

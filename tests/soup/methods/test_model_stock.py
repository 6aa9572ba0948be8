"""Tests of hfsoup.soup.methods.model_stock: the formula, tensor by tensor, against a direct computation."""

from __future__ import annotations

import itertools
import logging

import pytest
import torch
from soup_helpers import MemoryIngredient, assert_target_equals, make_ingredients, make_target

from hfsoup.errors import InvalidSettingError
from hfsoup.soup.methods import get_method


def reference_stock(ingredients, base) -> dict[str, torch.Tensor]:
    """Per tensor: the mean pairwise cosine c of the offsets from the base, t = N c / (1 + (N - 1) c)."""
    out = {}
    count = len(ingredients)
    for name, anchor in base.state.items():
        if not anchor.is_floating_point():
            continue
        weights = [ingredient.state[name].double().flatten() for ingredient in ingredients]
        offsets = [w - anchor.double().flatten() for w in weights]
        cosines = [torch.dot(a, b) / (a.norm() * b.norm()) for a, b in itertools.combinations(offsets, 2)]
        c = torch.stack(cosines).mean()
        t = count * c / (1 + (count - 1) * c)
        out[name] = (t * torch.stack(weights).mean(0) + (1 - t) * anchor.double().flatten()).view(
            anchor.shape
        )
    return out


@pytest.mark.parametrize("count", [2, 3])
def test_model_stock_equals_the_formula_tensor_by_tensor(count):
    base, *ingredients = make_ingredients(count + 1, seed=count)
    target = make_target(base)
    result = get_method("model_stock")(ingredients, target, base=base)
    assert result.method == "model_stock" and result.selected == list(range(count))
    assert_target_equals(target, reference_stock(ingredients, base), atol=1e-5, rtol=1e-5)


def test_a_tensor_the_base_lacks_is_averaged_plainly_and_logged(caplog):
    base, *ingredients = make_ingredients(4, seed=5)
    bare = MemoryIngredient("base", {n: t for n, t in base.state.items() if not n.startswith("head.")})
    target = make_target(base)
    with caplog.at_level(logging.INFO, logger="hfsoup.soup"):
        get_method("model_stock")(ingredients, target, base=bare)
    expected = torch.stack([i.state["head.weight"].double() for i in ingredients]).mean(0)
    torch.testing.assert_close(target["head.weight"].double(), expected, atol=1e-6, rtol=1e-6)
    assert "head.weight" in caplog.text and "averaged plainly" in caplog.text
    reference = reference_stock(ingredients, bare)
    assert_target_equals(
        {"layer.weight": target["layer.weight"]}, {"layer.weight": reference["layer.weight"]}
    )


def test_a_bare_base_s_names_meet_the_prefixed_ones():
    base, *ingredients = make_ingredients(3, seed=6)
    prefixed = [MemoryIngredient(i.name, {f"bert.{n}": t for n, t in i.state.items()}) for i in ingredients]
    target = make_target(prefixed[0])
    get_method("model_stock")(
        prefixed, target, base=base
    )  # the base says `layer.weight`, the models `bert.layer.weight`
    reference = reference_stock(ingredients, base)
    torch.testing.assert_close(
        target["bert.layer.weight"].double(), reference["layer.weight"], atol=1e-5, rtol=1e-5
    )


def test_model_stock_needs_a_base_and_two_ingredients():
    base, *ingredients = make_ingredients(3)
    with pytest.raises(InvalidSettingError, match="--base"):
        get_method("model_stock")(ingredients, make_target(base))
    with pytest.raises(InvalidSettingError, match="at least 2"):
        get_method("model_stock")(ingredients[:1], make_target(base), base=base)

"""Tests of hfsoup.soup.methods.layout: streaming ingredients into a live model's tensors (tied weights, mismatches)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from soup_helpers import (
    DistanceScorer,
    MemoryIngredient,
    assert_target_equals,
    individual_scores,
    make_ingredients,
    make_target,
    reference_average,
)
from transformers import BertForSequenceClassification

from hfsoup.errors import IncompatibleIngredientsError
from hfsoup.soup.methods import get_method, load_into


class FileIngredient:
    """An ingredient over a model folder's model.safetensors, read lazily."""

    def __init__(self, folder: Path):
        self.name = folder.name
        self.path = folder / "model.safetensors"

    def tensors(self, names=None):
        with safe_open(str(self.path), framework="pt") as handle:
            for name in handle.keys() if names is None else names:
                yield name, handle.get_tensor(name)


def test_tied_target_tensors_are_written_once_whichever_name_the_files_use():
    shared = torch.zeros(3, 2)
    target = {"embeddings.weight": shared, "decoder.weight": shared, "decoder.bias": torch.zeros(3)}
    a = MemoryIngredient("a", {"embeddings.weight": torch.ones(3, 2), "decoder.bias": torch.ones(3)})
    b = MemoryIngredient("b", {"decoder.weight": 3 * torch.ones(3, 2), "decoder.bias": 3 * torch.ones(3)})
    both = 5 * torch.ones(3, 2)
    c = MemoryIngredient(
        "c", {"embeddings.weight": both, "decoder.weight": both, "decoder.bias": 2 * torch.ones(3)}
    )
    get_method("uniform")([a, b, c], target)
    assert torch.equal(target["decoder.weight"], torch.full((3, 2), 3.0))
    assert target["decoder.weight"].data_ptr() == target["embeddings.weight"].data_ptr()
    assert torch.equal(target["decoder.bias"], torch.full((3,), 2.0))


def test_ingredients_that_do_not_match_the_target_are_refused():
    target = {"w": torch.zeros(2, 2), "b": torch.zeros(2)}
    missing = MemoryIngredient("short", {"w": torch.ones(2, 2)})
    with pytest.raises(IncompatibleIngredientsError, match=r"'short' lacks 1 tensor\(s\) .*\['b'\]"):
        load_into(target, missing)
    reshaped = MemoryIngredient("wide", {"w": torch.ones(2, 3), "b": torch.ones(2)})
    with pytest.raises(IncompatibleIngredientsError, match=r"'wide' has 'w' of shape \(2, 3\)"):
        get_method("uniform")([reshaped], target)


def test_soups_of_tiny_berts_from_safetensors(tiny_base_dir, tiny_ingredient_dirs):
    ingredients = [FileIngredient(folder) for folder in tiny_ingredient_dirs]
    files = [load_file(str(i.path)) for i in ingredients]
    model = BertForSequenceClassification.from_pretrained(tiny_base_dir).eval()
    target = dict(model.state_dict())

    load_into(target, ingredients[1])
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, files[1][name]), name

    get_method("uniform")(ingredients, target)
    reference = {n: sum(f[n].double() for f in files) / 3 for n in files[0]}
    params = dict(model.named_parameters())
    for name, expected in reference.items():
        torch.testing.assert_close(params[name].detach().double(), expected, atol=1e-6, rtol=1e-6, msg=name)

    # Greedy towards the second ingredient: it is best alone and every addition moves away from it.
    scorer = DistanceScorer(target, {n: t.double() for n, t in files[1].items()})
    scores = individual_scores(ingredients, target, scorer)
    result = get_method("greedy")(ingredients, target, score=scorer, individual_scores=scores)
    assert result.selected == [1] and [s.accepted for s in result.log] == [True, False, False]
    assert all(torch.equal(t, files[1][n]) for n, t in model.state_dict().items())


def test_load_into_casts_to_the_targets_dtypes_and_copies_integers():
    ingredient = make_ingredients(1, seed=6)[0]
    target = make_target(ingredient, dtype=torch.bfloat16)

    load_into(target, ingredient)

    for name, tensor in ingredient.state.items():
        if tensor.is_floating_point():
            assert target[name].dtype == torch.bfloat16 and torch.equal(
                target[name], tensor.to(torch.bfloat16)
            )
        else:
            assert torch.equal(target[name], tensor)


def test_an_ingredient_with_extra_tensors_streams_only_the_targets():
    ingredient = make_ingredients(1, seed=8)[0]
    target = make_target(ingredient)
    extra = MemoryIngredient("extra", {**ingredient.state, "unused.weight": torch.ones(3)})

    load_into(target, extra)

    assert "unused.weight" not in target
    assert_target_equals(target, reference_average([ingredient], [1.0]))

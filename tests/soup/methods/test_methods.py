"""Tests of hfsoup.soup: uniform, weighted and greedy soups against float64 references written here."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import BertForSequenceClassification

from hfsoup.errors import IncompatibleIngredientsError, InvalidSettingError, UnknownNameError
from hfsoup.soup.methods import SOUP_METHODS, SoupResult, get_method, load_into
from hfsoup.soup.methods import layout as soup_module

# -- test data: ingredients over in-memory tensors or safetensors files ---------------------------------------


class MemoryIngredient:
    """An ingredient over a dict of tensors, streamed one at a time."""

    def __init__(self, name: str, tensors: dict[str, torch.Tensor]):
        self.name = name
        self.state = tensors

    def tensors(self, names=None):
        for name in self.state if names is None else names:
            yield name, self.state[name]


class FileIngredient:
    """An ingredient over a model folder's model.safetensors, read lazily."""

    def __init__(self, folder: Path):
        self.name = folder.name
        self.path = folder / "model.safetensors"

    def tensors(self, names=None):
        with safe_open(str(self.path), framework="pt") as handle:
            for name in handle.keys() if names is None else names:
                yield name, handle.get_tensor(name)


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


def reference_greedy(ingredients, point):
    """Wortsman et al. 2022 Recipe 1, straightforwardly in float64, keeping an ingredient on a strict gain."""
    states = [{n: t.double() for n, t in float_tensors(i).items()} for i in ingredients]

    def average(indices):
        return {n: sum(states[i][n] for i in indices) / len(indices) for n in states[0]}

    individual = [DistanceScorer.of(s, point) for s in states]
    order = sorted(range(len(states)), key=lambda i: -individual[i])
    soup, best, steps = [order[0]], individual[order[0]], []
    for i in order[1:]:
        candidate = DistanceScorer.of(average([*soup, i]), point)
        steps.append((i, candidate, best, candidate > best))
        if candidate > best:
            soup, best = [*soup, i], candidate
    return soup, steps, average(soup)


def individual_scores(ingredients, target, scorer) -> list[float]:
    """Score each ingredient in the target, as the pipeline does."""
    scores = []
    for ingredient in ingredients:
        load_into(target, ingredient)
        scores.append(scorer())
    scorer.calls = 0
    return scores


# -- registry -------------------------------------------------------------------------------------------------


def test_registry_entries_have_name_paper_and_one_line_description():
    assert set(SOUP_METHODS) == {"uniform", "weighted", "greedy"}
    for key, method in SOUP_METHODS.items():
        assert method.name == key
        assert get_method(key) is method
        assert method.paper == "https://arxiv.org/abs/2203.05482"
        assert method.description and "\n" not in method.description


def test_unknown_method_lists_the_valid_names():
    with pytest.raises(UnknownNameError) as info:
        get_method("fisher")
    message = str(info.value)
    assert "'fisher'" in message and "\n" not in message
    assert all(name in message for name in SOUP_METHODS)


# -- uniform and weighted --------------------------------------------------------------------------------------


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


@pytest.mark.parametrize("method", ["uniform", "greedy"])
def test_weights_are_refused_by_methods_that_take_none(method):
    ingredients = make_ingredients(2)
    with pytest.raises(InvalidSettingError, match="takes no weights"):
        get_method(method)(
            ingredients,
            make_target(ingredients[0]),
            score=lambda: 0.0,
            individual_scores=[0, 0],
            weights=[1, 1],
        )


def test_a_soup_of_no_ingredients_is_refused():
    with pytest.raises(InvalidSettingError, match="at least one ingredient"):
        get_method("uniform")([], {"w": torch.zeros(2)})


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


# -- greedy ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_soup_follows_the_papers_algorithm(seed):
    # Ingredients 0..5 around a centre; some are far off, so some candidates improve the soup, others not.
    ingredients = make_ingredients(6, seed=seed, spread=[1, 3, 1, 4, 1, 2])
    generator = torch.Generator().manual_seed(100 + seed)
    states = [float_tensors(i) for i in ingredients]
    point = {n: (states[0][n] + states[2][n] + states[4][n]).double() / 3 for n in states[0]}
    point = {
        n: p + 0.05 * torch.randn(p.shape, generator=generator, dtype=torch.float64) for n, p in point.items()
    }
    originals = [{n: t.clone() for n, t in i.state.items()} for i in ingredients]

    target = make_target(ingredients[0])
    scorer = DistanceScorer(target, point)
    scores = individual_scores(ingredients, target, scorer)
    result = get_method("greedy")(ingredients, target, score=scorer, individual_scores=scores)

    expected_soup, expected_steps, expected_average = reference_greedy(ingredients, point)
    assert any(accepted for *_, accepted in expected_steps)
    assert not all(accepted for *_, accepted in expected_steps)
    assert result.selected == expected_soup
    assert result.weights == [1 / len(expected_soup)] * len(expected_soup)
    # The log: the start, then every accept and reject with the candidate's score and the current score.
    assert [step.index for step in result.log] == [expected_soup[0]] + [i for i, *_ in expected_steps]
    assert result.log[0].accepted and result.log[0].score_before is None
    for step, (index, candidate, before, accepted) in zip(result.log[1:], expected_steps, strict=True):
        assert (step.index, step.name, step.accepted) == (index, f"ft{index}", accepted)
        assert step.candidate_score == pytest.approx(candidate, rel=1e-5)
        assert step.score_before == pytest.approx(before, rel=1e-5)
        assert step.describe().startswith("accept" if accepted else "reject")
    # Single ingredients are never scored again; the target holds the final soup, whose score is reported.
    assert scorer.calls == len(ingredients) - 1
    assert_target_equals(target, expected_average)
    assert scorer() == result.selection_score
    assert torch.equal(target["position_ids"], ingredients[expected_soup[0]].state["position_ids"])
    assert all(
        torch.equal(i.state[n], t) for i, o in zip(ingredients, originals, strict=True) for n, t in o.items()
    )


def test_greedy_soup_logs_every_decision(caplog):
    ingredients = make_ingredients(3)
    target = make_target(ingredients[0])
    with caplog.at_level("INFO", logger="hfsoup.soup"):
        result = get_method("greedy")(
            ingredients, target, score=lambda: 0.5, individual_scores=[0.1, 0.3, 0.2]
        )
    lines = [record.getMessage() for record in caplog.records if "Greedy soup: " in record.getMessage()]
    assert lines == [f"Greedy soup: {step.describe()}" for step in result.log]
    assert [line.split(": ")[1].split()[0] for line in lines] == ["start", "accept", "reject"]


def test_greedy_ties_are_rejected_and_individual_ties_keep_the_given_order():
    ingredients = make_ingredients(4)
    target = make_target(ingredients[0])
    # Every candidate scores 0.9: the first (0.9 > 0.8) is kept, the next ones tie with 0.9 and are not.
    result = get_method("greedy")(
        ingredients, target, score=lambda: 0.9, individual_scores=[0.5, 0.8, 0.8, 0.1]
    )
    assert [step.index for step in result.log] == [1, 2, 0, 3]
    assert [step.accepted for step in result.log] == [True, True, False, False]
    assert result.selected == [1, 2] and result.selection_score == 0.9
    assert "a tie is not an improvement" in result.log[2].describe()
    assert_target_equals(target, reference_average([ingredients[1], ingredients[2]], [0.5, 0.5]))


def test_greedy_ranks_nan_scores_last():
    ingredients = make_ingredients(3)
    target = make_target(ingredients[0])
    result = get_method("greedy")(
        ingredients, target, score=lambda: 0.0, individual_scores=[float("nan"), 0.2, 0.5]
    )
    assert [step.index for step in result.log] == [2, 1, 0]
    assert result.selected == [2]
    assert_target_equals(target, reference_average([ingredients[2]], [1.0]))


def test_greedy_soup_of_bf16_model_holds_the_rounded_fp32_soup(monkeypatch):
    monkeypatch.setattr(soup_module, "_CHUNK_BYTES", 16)  # several groups per ingredient
    ingredients = make_ingredients(4, seed=5, dtype=torch.bfloat16)
    target = make_target(ingredients[0], dtype=torch.bfloat16)
    result = get_method("greedy")(
        ingredients, target, score=lambda: 1.0, individual_scores=[0.0, 0.1, 0.2, 0.3]
    )
    assert result.selected == [3, 2]
    for name, expected in reference_average([ingredients[3], ingredients[2]], [0.5, 0.5]).items():
        assert torch.equal(target[name], expected.to(torch.bfloat16)), name


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"individual_scores": [0.1, 0.2]}, "needs `score`"),
        ({"score": lambda: 0.0}, "got none"),
        ({"score": lambda: 0.0, "individual_scores": [0.1]}, "got 1"),
        ({"score": lambda: 0.0, "individual_scores": [0.1, "x"]}, "'x'"),
    ],
)
def test_greedy_soup_needs_a_scorer_and_one_score_per_ingredient(kwargs, fragment):
    ingredients = make_ingredients(2)
    with pytest.raises(InvalidSettingError) as info:
        get_method("greedy")(ingredients, make_target(ingredients[0]), **kwargs)
    assert fragment in str(info.value) and "\n" not in str(info.value)


# -- the target: tied weights, missing tensors, a real (tiny) BERT ---------------------------------------------


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

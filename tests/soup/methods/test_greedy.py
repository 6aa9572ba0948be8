"""Tests of hfsoup.soup.methods.greedy: the greedy soup of Wortsman et al. 2022 against a float64 reference."""

from __future__ import annotations

import pytest
import torch
from soup_helpers import (
    DistanceScorer,
    assert_target_equals,
    float_tensors,
    individual_scores,
    make_ingredients,
    make_target,
    reference_average,
)

from hfsoup.errors import InvalidSettingError
from hfsoup.soup.methods import get_method
from hfsoup.soup.methods import layout as soup_module


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


@pytest.mark.parametrize("listing", [[0, 1], [1, 0]])
def test_of_two_ingredients_with_equal_individual_scores_the_first_listed_is_started_from(listing):
    # The docstring's tie rule: a stable sort keeps the given order (the released code tries ties in reverse).
    pool = make_ingredients(2, seed=7)
    ingredients = [pool[i] for i in listing]
    target = make_target(ingredients[0])

    result = get_method("greedy")(ingredients, target, score=lambda: 0.5, individual_scores=[0.9, 0.9])

    assert [step.index for step in result.log] == [0, 1]
    assert result.log[0].name == pool[listing[0]].name and result.log[0].describe().startswith(
        "start with #0"
    )
    assert result.selected == [0] and not result.log[1].accepted
    assert_target_equals(target, reference_average([ingredients[0]], [1.0]))
    assert torch.equal(target["position_ids"], ingredients[0].state["position_ids"])


def test_a_minimum_gain_rejects_the_gains_below_it_and_zero_is_the_paper_s_rule():
    ingredients = make_ingredients(6, seed=1, spread=[1, 3, 1, 4, 1, 2])
    states = [float_tensors(i) for i in ingredients]
    point = {n: (states[0][n] + states[2][n] + states[4][n]).double() / 3 for n in states[0]}
    target = make_target(ingredients[0])
    scorer = DistanceScorer(target, point)
    scores = individual_scores(ingredients, target, scorer)
    strict = get_method("greedy")(ingredients, target, score=scorer, individual_scores=scores, min_gain=0.0)
    assert strict.selected == reference_greedy(ingredients, point)[0]  # the paper's rule, today's choices
    gains = [s.candidate_score - s.score_before for s in strict.log[1:] if s.accepted]
    margin = min(gains) + 1e-9  # just above the smallest gain the strict rule took
    guarded = get_method("greedy")(
        ingredients, target, score=scorer, individual_scores=scores, min_gain=margin
    )
    assert len(guarded.selected) < len(strict.selected)
    assert all(s.candidate_score - s.score_before > margin for s in guarded.log[1:] if s.accepted)
    assert any(f"+ {margin:g}" in s.describe() for s in guarded.log[1:])


def test_a_selection_where_every_ingredient_scores_nan_is_refused():
    ingredients = make_ingredients(3)
    target = make_target(ingredients[0])
    with pytest.raises(InvalidSettingError, match="Every ingredient scores NaN"):
        get_method("greedy")(
            ingredients, target, score=lambda: float("nan"), individual_scores=[float("nan")] * 3
        )

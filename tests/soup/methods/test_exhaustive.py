"""Tests of hfsoup.soup.methods.exhaustive: the subset search against a brute force over every subset."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from soup_helpers import DistanceScorer, float_tensors, individual_scores, make_ingredients, make_target

from hfsoup.errors import InvalidSettingError
from hfsoup.result import SubsetScore
from hfsoup.soup.methods import get_method
from hfsoup.soup.methods import layout as layout_module
from hfsoup.soup.methods.exhaustive import TOP_SUBSETS, gray_flips, rank_key

# -- deterministic scores of the weights in a target ----------------------------------------------------------


class RowsScorer:
    """Accuracy on a fixed labelled set: row r is predicted 1 when `(weights - centre) . v_r > 0`.

    Called with `beat`, it stops after the first batch where `(correct + rows left) / rows <= beat`, the
    Scorer's accuracy bound; `rows_scored` counts every row it looked at.
    """

    def __init__(self, target, centre, truth, rows=48, batch=6, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.target, self.centre, self.batch = target, centre, batch
        self.directions = [
            {n: torch.randn(c.shape, generator=generator, dtype=torch.float64) for n, c in centre.items()}
            for _ in range(rows)
        ]
        self.labels = [self.predict(truth, v) for v in self.directions]
        self.rows_scored = 0

    def predict(self, state, direction) -> bool:
        return sum(float(((state[n].double() - c) * direction[n]).sum()) for n, c in self.centre.items()) > 0

    def score_of(self, state) -> float:
        """The full score of the weights in `state`, counting nothing."""
        pairs = zip(self.directions, self.labels, strict=True)
        return sum(self.predict(state, v) == label for v, label in pairs) / len(self.labels)

    def __call__(self, beat=None):
        rows, correct = len(self.labels), 0
        for start in range(0, rows, self.batch):
            for direction, label in zip(
                self.directions[start : start + self.batch],
                self.labels[start : start + self.batch],
                strict=True,
            ):
                correct += self.predict(self.target, direction) == label
                self.rows_scored += 1
            left = rows - min(start + self.batch, rows)
            if beat is not None and (correct + left) / rows <= beat:
                return None
        return correct / rows


class Oracle:
    """The most eager early rejection allowed: `None` whenever the full score is `<= beat`."""

    def __init__(self, score):
        self.score = score
        self.rejected = 0

    def __call__(self, beat=None):
        value = self.score()
        if beat is not None and value <= beat:
            self.rejected += 1
            return None
        return value


def brute_force(ingredients, score_of):
    """Every non-empty subset's uniform soup, made independently by method `uniform`, scored, best first."""
    ranked = []
    for size in range(1, len(ingredients) + 1):
        for subset in itertools.combinations(range(len(ingredients)), size):
            target = make_target(ingredients[0])
            get_method("uniform")([ingredients[i] for i in subset], target)
            ranked.append(SubsetScore(list(subset), score_of(target)))
    return sorted(ranked, key=rank_key)


def uniform_of(ingredients, indices, dtype=torch.float32):
    target = make_target(ingredients[0], dtype=dtype)
    get_method("uniform")([ingredients[i] for i in indices], target)
    return target


def assert_same_ranking(result, expected):
    assert result.selected == expected[0].indices
    assert [s.indices for s in result.top_subsets] == [s.indices for s in expected[:TOP_SUBSETS]]
    for got, want in zip(result.top_subsets, expected, strict=False):
        assert got.score == pytest.approx(want.score, rel=1e-6, abs=1e-9)


def off_centre_point(ingredients, members, seed):
    """A point near the mean of `members`, so the best subset is neither one ingredient nor all of them."""
    states = [float_tensors(i) for i in ingredients]
    generator = torch.Generator().manual_seed(seed)
    return {
        n: sum(states[m][n].double() for m in members) / len(members)
        + 0.05 * torch.randn(states[0][n].shape, generator=generator, dtype=torch.float64)
        for n in states[0]
    }


# -- the tests -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 6])
def test_gray_flips_visit_every_non_empty_subset_once(count):
    members, seen = set(), []
    for index, joins in gray_flips(count):
        assert (index in members) != joins
        members ^= {index}
        seen.append(frozenset(members))
    assert len(seen) == len(set(seen)) == 2**count - 1 and frozenset() not in seen


@pytest.mark.parametrize(("count", "seed"), [(4, 0), (5, 1), (7, 2)])
def test_subset_search_equals_a_brute_force_over_all_subsets(count, seed, monkeypatch):
    monkeypatch.setattr(layout_module, "_CHUNK_BYTES", 16)  # several streamed groups per ingredient
    ingredients = make_ingredients(count, seed=seed, spread=[1 + (i % 3) for i in range(count)])
    point = off_centre_point(ingredients, [0, 2, count - 1], seed)
    expected = brute_force(ingredients, lambda target: DistanceScorer.of(target, point))
    assert 1 < len(expected[0].indices) < count

    target = make_target(ingredients[0])
    scorer = DistanceScorer(target, point)
    known = individual_scores(ingredients, target, scorer)
    result = get_method("exhaustive")(ingredients, target, score=scorer, individual_scores=known)

    assert_same_ranking(result, expected)
    assert result.method == "exhaustive" and result.weights == [1 / len(result.selected)] * len(
        result.selected
    )
    assert result.selection_score == result.top_subsets[0].score
    assert scorer.calls == 2**count - 1 - count  # single ingredients are not scored again
    # The target holds the winner's uniform soup, exactly as method `uniform` makes it.
    reference = uniform_of(ingredients, result.selected)
    assert all(torch.equal(target[name], reference[name]) for name in reference)


def test_the_soup_of_a_bf16_model_is_the_winners_uniform_soup():
    ingredients = make_ingredients(4, seed=3, dtype=torch.bfloat16)
    point = off_centre_point(ingredients, [1, 3], 3)
    target = make_target(ingredients[0], dtype=torch.bfloat16)
    result = get_method("exhaustive")(ingredients, target, score=DistanceScorer(target, point))
    reference = uniform_of(ingredients, result.selected, dtype=torch.bfloat16)
    assert result.selected == brute_force(ingredients, lambda t: DistanceScorer.of(t, point))[0].indices
    assert all(torch.equal(target[name], reference[name]) for name in reference)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_early_rejection_never_changes_the_choice_and_scores_fewer_rows(seed):
    ingredients = make_ingredients(6, seed=seed, spread=[1, 3, 1, 2, 1, 3])
    centre = off_centre_point(ingredients, range(6), 10 + seed)  # near, but not at, any subset's soup
    truth = off_centre_point(ingredients, [0, 2, 4], seed)
    runs = {}
    for bounded in (False, True):
        target = make_target(ingredients[0])
        scorer = RowsScorer(target, centre, truth, seed=seed)
        score = scorer if bounded else (lambda scorer=scorer: scorer())
        result = get_method("exhaustive")(ingredients, target, score=score)
        runs[bounded] = (result, scorer.rows_scored, target)

    (plain, plain_rows, plain_target), (early, early_rows, early_target) = runs[False], runs[True]
    assert early.selected == plain.selected and early.top_subsets == plain.top_subsets
    assert all(torch.equal(plain_target[name], early_target[name]) for name in plain_target)
    assert early_rows < plain_rows == 48 * 63
    expected = brute_force(ingredients, RowsScorer(None, centre, truth, seed=seed).score_of)
    assert len({s.score for s in expected}) < len(expected)  # accuracy ties: the tie rule decides
    assert_same_ranking(plain, expected)


@pytest.mark.parametrize("scores", ["all equal", "distances"])
def test_the_most_eager_rejection_keeps_the_same_top_subsets(scores):
    ingredients = make_ingredients(5, seed=4)
    point = off_centre_point(ingredients, [1, 2], 4)
    results, oracles = [], []
    for eager in (False, True):
        target = make_target(ingredients[0])
        plain = (lambda: 0.5) if scores == "all equal" else DistanceScorer(target, point)
        oracles.append(Oracle(plain))
        results.append(get_method("exhaustive")(ingredients, target, score=oracles[-1] if eager else plain))
    assert results[0].top_subsets == results[1].top_subsets
    assert oracles[0].rejected == 0 < oracles[1].rejected
    if scores == "all equal":  # ties go to the smaller subset, then the smaller indices
        assert [s.indices for s in results[0].top_subsets] == [[0], [1], [2], [3], [4]]


def test_nan_ranks_last():
    ranked = sorted(
        [SubsetScore([0], math.nan), SubsetScore([1, 2], 0.5), SubsetScore([2], 0.5), SubsetScore([1], 0.7)],
        key=rank_key,
    )
    assert [s.indices for s in ranked] == [[1], [2], [1, 2], [0]]


class Unreadable:
    name = "unreadable"

    def tensors(self, names=None):
        raise AssertionError("the limit must be checked before any weight is read")


def test_thirteen_ingredients_are_refused_before_any_read():
    with pytest.raises(InvalidSettingError) as info:
        get_method("exhaustive")([Unreadable()] * 13, {"w": torch.zeros(2)}, score=lambda: 0.0)
    message = str(info.value)
    assert "13 ingredients" in message and "8191 subsets" in message and "12 ingredients" in message
    assert "greedy" in message and "\n" not in message
    get_method("exhaustive").check_count(12)  # the limit itself is allowed


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({}, "needs `score`"),
        ({"score": lambda: 0.0, "weights": [1, 1]}, "takes no weights"),
        ({"score": lambda: 0.0, "individual_scores": [0.1]}, "one number per ingredient (2)"),
    ],
)
def test_needs_a_score_and_no_weights(kwargs, fragment):
    ingredients = make_ingredients(2)
    with pytest.raises(InvalidSettingError) as info:
        get_method("exhaustive")(ingredients, make_target(ingredients[0]), **kwargs)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_logs_the_number_of_subsets_then_an_estimate(caplog):
    ingredients = make_ingredients(3)
    with caplog.at_level("INFO", logger="hfsoup.soup"):
        get_method("exhaustive")(
            ingredients, make_target(ingredients[0]), score=lambda: 0.5, individual_scores=[0.1, 0.2, 0.3]
        )
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Exhaustive soup")]
    assert "7 subsets of 3 ingredients, 4 scoring passes" in lines[0]
    assert "the first subset took" in lines[1] and "the 3 passes left should take about" in lines[1]
    assert "ingredients [0, 1] score 0.5000, the best of 7 subsets (0 passes stopped early)" in lines[-1]

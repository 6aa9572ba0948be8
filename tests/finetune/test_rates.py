"""Tests of hfsoup.finetune.rates: runs grouped by learning rate, and the rate whose soup is kept."""

from __future__ import annotations

from hfsoup.finetune.rates import rate_groups, rates_record


def _record(name, **overrides):
    return ({"name": name, "overrides": overrides}, [f"{name}/raw"])


def test_runs_are_grouped_by_their_own_rate_or_the_recipe_s_in_ascending_rate():
    records = [
        _record("a", learning_rate=1e-4, seed=1),
        _record("b", seed=2),
        _record("c", learning_rate=1e-4),
    ]
    groups = rate_groups(records, default=5e-5)
    assert list(groups) == [5e-5, 1e-4]
    assert [record["name"] for record, _folders in groups[1e-4]] == ["a", "c"]


def test_the_rate_kept_is_the_best_on_selection_and_a_tie_keeps_the_lower_rate():
    assert rates_record({5e-5: 0.81, 1e-4: 0.83}, [5e-5, 1e-4])["chosen"] == 1e-4
    tie = rates_record({5e-5: 0.83, 1e-4: 0.83}, [5e-5, 1e-4])
    assert tie["chosen"] == 5e-5 and tie["selection"] == {"5e-05": 0.83, "0.0001": 0.83} and not tie["mixed"]
    assert rates_record(None, [5e-5, 1e-4]) == {"mixed": True, "rates": [5e-5, 1e-4]}

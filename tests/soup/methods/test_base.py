"""Tests of hfsoup.soup.methods.base: what every method shares (argument checks, the greedy step's text)."""

from __future__ import annotations

import pytest
from soup_helpers import (
    make_ingredients,
    make_target,
)

from hfsoup.errors import InvalidSettingError
from hfsoup.soup.methods import get_method
from hfsoup.soup.methods.base import SoupResult, SoupStep, is_number, refuse_weights


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


@pytest.mark.parametrize(
    ("step", "text"),
    [
        (SoupStep(2, "ft2", 0.81234, None, True), "start with #2 'ft2': best individual score 0.8123"),
        (SoupStep(0, "ft0", 0.9, 0.8, True), "accept #0 'ft0': candidate soup scores 0.9000 > 0.8000"),
        (SoupStep(1, "ft1", 0.7, 0.8, False), "reject #1 'ft1': candidate soup scores 0.7000, not > 0.8000"),
        (
            SoupStep(1, "ft1", 0.8, 0.8, False),
            "reject #1 'ft1': candidate soup scores 0.8000, not > 0.8000 (a tie is not an improvement)",
        ),
    ],
)
def test_a_greedy_step_describes_itself_in_one_line(step, text):
    assert step.describe() == text


def test_refuse_weights_and_is_number():
    refuse_weights("uniform", None)
    with pytest.raises(InvalidSettingError, match="'uniform' takes no weights; use method 'weighted'"):
        refuse_weights("uniform", [1.0])
    assert is_number(1) and is_number(0.5) and is_number(float("nan"))
    assert not is_number(True) and not is_number("1") and not is_number(None)


def test_a_soup_result_starts_with_no_log_and_no_score():
    result = SoupResult("uniform", [0, 1], [0.5, 0.5])
    assert result.log == [] and result.selection_score is None

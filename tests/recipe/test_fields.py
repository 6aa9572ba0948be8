"""Tests of hfsoup.recipe_fields: typed values, dataclasses from mappings, YAML, each wrong one in one line."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from hfsoup.errors import RecipeError
from hfsoup.recipe.fields import build, check_value, read_yaml


@pytest.mark.parametrize(
    ("value", "hint", "expected"),
    [
        (3, float, 3.0),
        (None, int | None, None),
        ([1, 2.5], list[float], [1.0, 2.5]),
        ({"a": 1}, dict[str, int], {"a": 1}),
    ],
)
def test_good_values_pass_and_ints_become_floats(value, hint, expected):
    result = check_value(value, hint, "recipe", "x")
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    ("value", "hint", "fragment"),
    [
        (True, int, "a whole number"),
        ("fast", float, "a number"),
        ("", str, "a non-empty string"),
        ([1, "b"], list[int], "x[1]"),
        (1, bool, "true or false"),
    ],
)
def test_wrong_values_name_the_field_the_value_and_the_type(value, hint, fragment):
    with pytest.raises(RecipeError) as caught:
        check_value(value, hint, "recipe", "x")
    assert fragment in str(caught.value) and "recipe.x" in str(caught.value) and "\n" not in str(caught.value)


@dataclass
class _Pair:
    left: int
    right: int = 0


def test_build_refuses_unknown_and_missing_fields_in_one_line():
    assert build(_Pair, {"left": 1}, "pair") == _Pair(1, 0)
    with pytest.raises(RecipeError, match=r"unknown field\(s\) \['up'\] in pair; valid fields: left, right"):
        build(_Pair, {"left": 1, "up": 2}, "pair")
    with pytest.raises(RecipeError, match=r"pair lacks the required field\(s\) \['left'\]"):
        build(_Pair, {}, "pair")
    with pytest.raises(RecipeError, match="pair must be a mapping"):
        build(_Pair, [1], "pair")


def test_read_yaml_names_the_line_of_a_syntax_error(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("task: mrpc\nmodels: [a, b\n")
    with pytest.raises(RecipeError, match=r"not valid YAML at line \d"):
        read_yaml(path, "recipe file")
    with pytest.raises(RecipeError, match="does not exist"):
        read_yaml(tmp_path / "missing.yaml", "recipe file")

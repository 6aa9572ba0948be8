"""Tests of hfsoup.soup_yaml: the plain data of a merge's soup.yaml, rounded measures, a plain merge's record."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from hfsoup.publish.soup_yaml import significant, soup_yaml
from hfsoup.recipe import load_recipe, load_soup_yaml
from hfsoup.result import SOUP_FORMAT, IngredientRecord, MergeResult


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.123456789, 0.123457), (123456.789, 123457.0), (1e-9 / 3, 3.33333e-10), (0.5, 0.5)],
)
def test_significant_keeps_six_digits_as_a_float(value, expected):
    assert significant(value) == expected and isinstance(significant(value), float)


def test_significant_keeps_nan_and_infinity():
    assert math.isnan(significant(float("nan"))) and significant(float("-inf")) == float("-inf")


def plain_result() -> MergeResult:
    records = [
        IngredientRecord("a", "runs/a", None, None, {}, True, 2 / 3, "sha256:" + "1" * 64),
        IngredientRecord("b", "user/b", "user/b", "c" * 40, {}, True, 1 / 3),
    ]
    return MergeResult(
        task=None,
        dataset=None,
        splits={},
        metric=None,
        score_key=None,
        method="weighted",
        method_paper="https://arxiv.org/abs/2203.05482",
        method_description="A weighted average.",
        ingredients=records,
        order_added=[0, 1],
        log=[],
        candidates={},
        best_ingredient=None,
        recipe={
            "models": ["runs/a", "user/b"],
            "method": "weighted",
            "weights": [2.0, 1.0],
            "path": Path("x"),
        },
        label_names=["neg", "pos"],
    )


def test_a_plain_merge_records_weights_labels_and_no_score(tmp_path):
    data = yaml.safe_load(soup_yaml(plain_result()))
    assert data["format"] == SOUP_FORMAT and data["task"] is None and data["results"] == {}
    assert data["labels"] == ["neg", "pos"] and data["recipe"]["path"] == "x"  # paths become strings
    assert [entry["weight"] for entry in data["soup"]] == [0.666667, 0.333333]
    assert [entry["pinned_reference"] for entry in data["soup"]] == ["runs/a", "user/b@" + "c" * 40]


def test_a_plain_merge_soup_yaml_replays_as_a_plain_recipe(tmp_path):
    result = plain_result()
    del result.recipe["path"]
    path = tmp_path / "soup.yaml"
    path.write_text(soup_yaml(result), encoding="utf-8")
    assert load_soup_yaml(path)["recipe"]["method"] == "weighted"
    recipe = load_recipe(path)
    assert recipe.task is None and not recipe.scored and recipe.weights == [2.0, 1.0]
    assert recipe.models == ["runs/a", "user/b@" + "c" * 40]
    assert recipe.content_hashes == {"runs/a": "sha256:" + "1" * 64}

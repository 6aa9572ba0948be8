"""Tests of hfsoup.finetune_recipe: what a run yields, and wrong settings refused in one line before any work."""

from __future__ import annotations

import pytest

from hfsoup.errors import RecipeError
from hfsoup.recipe.finetune import FinetuneRecipe


def test_what_each_run_yields():
    assert FinetuneRecipe(base="b").ingredient_kinds == ["raw", "ema"]
    assert FinetuneRecipe(base="b", ema_decay=None).ingredient_kinds == ["raw"]
    epochs = FinetuneRecipe(base="b", epochs=4, ingredients=["ema", "epochs"])
    assert epochs.snapshot_epochs == [1, 2, 3] and epochs.ingredients_per_run == 4
    assert FinetuneRecipe(base="b", epochs=4).snapshot_epochs == []


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"ingredients": ["raw", "raw"]}, "distinct kinds"),
        ({"ingredients": []}, "distinct kinds"),
        ({"ingredients": ["ema"], "ema_decay": None}, "ema_decay is null"),
        ({"ingredients": ["epochs"], "max_steps": 10}, "whole number of epochs"),
        ({"ingredients": ["epochs"], "epochs": 2.5}, "whole number of epochs"),
        ({"push_to_hub": "alice"}, "push_to_hub"),
        ({"ema_schedule": "cosine"}, "ema_schedule"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"grid": {"seed": 3}}, "finetune.grid.seed"),
        ({"runs": []}, "finetune.runs"),
        ({"max_steps": 0}, "at least 1"),
        ({"epochs": 0}, "finetune.epochs"),
        ({"learning_rate": -1.0}, "finetune.learning_rate"),
        ({"private": "yes"}, "true or false"),
    ],
)
def test_wrong_settings_are_one_line(fields, fragment):
    with pytest.raises(RecipeError) as caught:
        FinetuneRecipe(base="b", **fields)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)

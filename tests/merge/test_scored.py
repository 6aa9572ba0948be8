"""Tests of hfsoup.scored_soup's split roles (its soups are tested end to end in test_pipeline.py and test_cli.py)."""

from __future__ import annotations

from hfsoup.eval import get_task
from hfsoup.merge.scored import split_specs
from hfsoup.recipe import MergeRecipe


def test_the_default_halves_and_mnli_mismatched_reported_whole():
    recipe = MergeRecipe(task="mnli", models=["a", "b"])
    assert split_specs(recipe, get_task("mnli")) == {
        "selection": "selection",
        "report": "report",
        "validation_mismatched": "validation_mismatched",
    }
    assert split_specs(MergeRecipe(task="mrpc", models=["a"]), get_task("mrpc")) == {
        "selection": "selection",
        "report": "report",
    }


def test_explicit_splits_and_a_plain_merge():
    recipe = MergeRecipe(
        task="mnli",
        models=["a"],
        selection_split="validation_matched[:50%]",
        report_split="validation_mismatched",
    )
    assert split_specs(recipe, get_task("mnli")) == {
        "selection": "validation_matched[:50%]",
        "report": "validation_mismatched",
    }
    assert split_specs(MergeRecipe(models=["a", "b"], method="uniform"), None) == {}

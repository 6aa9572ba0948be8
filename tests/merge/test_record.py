"""Tests of hfsoup.merge.record: a soup step's `Souped`, and the one builder of a `MergeResult`."""

from __future__ import annotations

from hfsoup.merge.record import Souped, _common_base, ingredient_records, merge_result
from hfsoup.recipe import MergeRecipe
from hfsoup.soup import SoupResult, load_ingredients


def test_a_plain_result_has_every_field_set_at_construction(tiny_ingredient_dirs):
    models = [str(folder) for folder in tiny_ingredient_dirs[:2]]
    recipe = MergeRecipe(models=models, method="weighted", weights=[1.0, 3.0])
    ingredients = load_ingredients(models)
    souped = Souped(
        ingredient_records(ingredients), SoupResult(method="weighted", selected=[0, 1], weights=[0.25, 0.75])
    )
    assert [(r.selected, r.weight) for r in souped.records] == [(True, 0.25), (True, 0.75)]
    result = merge_result(
        recipe,
        None,
        ingredients,
        souped,
        splits={},
        label_names=["a", "b"],
        compatibility=["note"],
        command="x",
    )
    assert (result.task, result.dataset, result.metric, result.best_ingredient) == (None, None, None, None)
    assert result.method == "weighted" and result.order_added == [0, 1] and result.log == []
    assert result.label_names == ["a", "b"] and result.compatibility == ["note"] and result.command == "x"
    assert result.recipe == recipe.to_dict() and all(r.content_hash for r in result.ingredients)


def test_base_given_as_a_hub_id_is_the_common_base_even_without_ingredients():
    recipe = MergeRecipe(task="mrpc", models=["a"], base="org/bert-base@v2")
    assert _common_base(recipe, []) == "org/bert-base"

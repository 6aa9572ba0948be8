"""hfsoup.result: what a merge produced, as plain data."""

from __future__ import annotations

from hfsoup.result import SOUP_FORMAT, IngredientRecord, MergeResult


def record(name: str, repo_id: str | None, revision: str | None, selected: bool = False) -> IngredientRecord:
    return IngredientRecord(
        name, name if repo_id is None else f"{repo_id}@main", repo_id, revision, {}, selected
    )


def test_pinned_reference_names_exactly_the_weights():
    hub = record("a", "alice/a", "f" * 40)
    local = record("runs/b", None, None)
    assert hub.pinned_reference == "alice/a@" + "f" * 40  # the branch the user gave is replaced by the sha
    assert local.pinned_reference == "runs/b"
    assert local.content_hash is None


def test_selected_follows_the_order_the_soup_took_them():
    ingredients = [record("a", None, None), record("b", None, None), record("c", None, None)]
    result = MergeResult(
        task="mrpc",
        dataset="nyu-mll/glue",
        splits={"selection": "selection", "report": "report"},
        metric="glue",
        score_key="accuracy",
        method="greedy",
        method_paper="",
        method_description="",
        ingredients=ingredients,
        order_added=[2, 0],
        log=[],
        candidates={},
        best_ingredient=2,
    )
    assert [r.name for r in result.selected] == ["c", "a"]
    assert result.base_model is None and result.license is None
    assert SOUP_FORMAT == "hfsoup-soup/1"

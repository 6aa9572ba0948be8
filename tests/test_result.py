"""hfsoup.result: what a merge produced, as plain data."""

from __future__ import annotations

import json

from hfsoup.result import SOUP_FORMAT, IngredientRecord, MergeResult, SubsetScore


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


def test_to_dict_is_plain_json_with_each_pinned_reference():
    hub = record("a", "alice/a", "f" * 40, selected=True)
    hub.scores = {"report": {"accuracy": 0.75, "score": 0.75}}
    result = MergeResult(
        task="mrpc",
        dataset="nyu-mll/glue",
        splits={"selection": "selection", "report": "report"},
        metric="glue",
        score_key="accuracy",
        method="exhaustive",
        method_paper="",
        method_description="",
        ingredients=[hub, record("runs/b", None, None)],
        order_added=[0],
        log=["took a"],
        candidates={"soup": hub.scores},
        best_ingredient=0,
        top_subsets=[SubsetScore([0], 0.75)],
    )
    data = result.to_dict()
    assert json.loads(json.dumps(data)) == data  # nothing JSON cannot hold
    assert data["ingredients"][0]["pinned_reference"] == "alice/a@" + "f" * 40
    assert data["ingredients"][1]["pinned_reference"] == "runs/b"
    assert data["ingredients"][0]["scores"]["report"]["accuracy"] == 0.75
    assert data["top_subsets"] == [{"indices": [0], "score": 0.75}]
    assert data["order_added"] == [0] and data["method"] == "exhaustive" and data["base_model"] is None

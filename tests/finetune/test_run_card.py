"""Tests of hfsoup.finetune.run_card: a run's card says how it was trained and how each weights scored."""

from __future__ import annotations

from hfsoup.eval import get_task
from hfsoup.finetune.run_card import build_run_card
from hfsoup.recipe import FinetuneRecipe

RECORD = {
    "name": "lr0.0001-seed1-abc",
    "overrides": {"learning_rate": 1e-4, "seed": 1},
    "steps": 345,
    "scores": {"raw": {"accuracy": 0.8, "score": 0.82}, "ema": {"accuracy": 0.81, "score": 0.83}},
}


def test_a_hub_base_is_the_base_model_and_scores_are_eval_results():
    recipe = FinetuneRecipe(base="sentence-transformers/all-MiniLM-L6-v2", training={"weight_decay": 0.01})
    card = build_run_card(
        "ema", RECORD, recipe, get_task("mrpc"), {"dataset": None, "command": "hfsoup finetune r.yaml"}
    )
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert card.data.base_model_relation == "finetune" and card.data.datasets == ["nyu-mll/glue"]
    values = {(r.metric_type, r.metric_value) for r in card.data.eval_results}
    assert values == {("accuracy", 0.81), ("score", 0.83)}
    text = card.text
    assert "| **ema** | 0.8100 | 0.8300 |" in text and "| raw | 0.8000 | 0.8200 |" in text
    assert "| learning_rate | 0.0001 |" in text and "| weight_decay | 0.01 |" in text
    assert "moving average" in text and "hfsoup finetune r.yaml" in text


def test_a_local_base_and_dataset_are_not_claimed_as_hub_ids():
    card = build_run_card(
        "raw", RECORD, FinetuneRecipe(base="/models/base"), get_task("mrpc"), {"dataset": "/data/glue"}
    )
    assert card.data.base_model is None and card.data.datasets is None
    assert "`/models/base`" in card.text and "end of training" in card.text

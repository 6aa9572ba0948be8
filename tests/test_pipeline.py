"""The merge pipeline through its Python API: results, staging, and the real MiniLM recipe (slow)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hfsoup.eval import get_task, load_split
from hfsoup.eval.scoring import Scorer
from hfsoup.pipeline import run_merge
from hfsoup.recipe import FinetuneRecipe, MergeRecipe
from hfsoup.result import BEST, ENSEMBLE, SOUP, UNIFORM
from hfsoup.staging import staged


def test_result_holds_every_candidate_and_the_greedy_decisions(tiny_stsb_dirs, glue_hub_dir):
    recipe = MergeRecipe(task="stsb", models=tiny_stsb_dirs, dataset=str(glue_hub_dir), max_length=64)
    result = run_merge(recipe, progress=False).result
    selection = [record.scores["selection"]["score"] for record in result.ingredients]
    assert result.best_ingredient == max(range(len(selection)), key=selection.__getitem__)
    assert result.candidates[BEST] == result.ingredients[result.best_ingredient].scores
    assert set(result.candidates) == {BEST, ENSEMBLE, SOUP, UNIFORM}
    for candidate in result.candidates.values():
        assert set(candidate) == {"selection", "report"}
    # Greedy starts from the best ingredient and only accepts strict improvements on the selection split.
    assert result.order_added[0] == result.best_ingredient
    assert result.candidates[SOUP]["selection"]["score"] >= result.candidates[BEST]["selection"]["score"]
    assert len(result.log) == len(tiny_stsb_dirs)
    assert sum(record.weight for record in result.ingredients) == pytest.approx(1.0)


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    output = tmp_path / "soup"
    with pytest.raises(RuntimeError), staged(output, overwrite=False) as staging:
        (staging / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_the_old_output(tmp_path):
    output = tmp_path / "soup"
    output.mkdir()
    (output / "old.txt").write_text("old")
    with staged(output, overwrite=True) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in output.iterdir()) == ["new.txt"]


@pytest.mark.slow
def test_minilm_recipe_fine_tunes_with_ema_and_soups(tmp_path, minilm_dir, glue_hub_dir):
    recipe = MergeRecipe(
        task="mrpc",
        dataset=str(glue_hub_dir),
        finetune=FinetuneRecipe(
            base=str(minilm_dir),
            runs=[{"seed": 1}, {"seed": 2}],
            train_split="train[:512]",
            max_steps=8,
            batch_size=16,
            max_length=64,
            ema_decay=0.8,
            learning_rate=1e-4,
        ),
    )
    merge = run_merge(recipe, output_dir=tmp_path / "soup", progress=False)
    result = merge.result
    assert len(result.ingredients) == 4  # each run's raw and EMA weights
    assert result.candidates[SOUP]["selection"]["score"] >= result.candidates[BEST]["selection"]["score"]

    model = AutoModelForSequenceClassification.from_pretrained(merge.output_dir)
    assert model.config.id2label == {0: "not_equivalent", 1: "equivalent"}
    task = get_task("mrpc")
    scorer = Scorer(
        model,
        AutoTokenizer.from_pretrained(merge.output_dir),
        task,
        load_split(task, "report", dataset=str(glue_hub_dir)),
    )
    assert scorer()[0]["score"] == pytest.approx(result.candidates[SOUP]["report"]["score"], abs=1e-6)
    assert all(torch.isfinite(p).all() for p in model.parameters())

"""Tests of hfsoup.finetune.train: a stopped run resumes exactly (EMA included); epochs become ingredients."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import Trainer

from hfsoup.eval import get_task
from hfsoup.finetune import finetune_ingredients
from hfsoup.finetune.train import last_complete_checkpoint
from hfsoup.recipe import FinetuneRecipe

MRPC = get_task("mrpc")


def _weights(folder) -> dict[str, torch.Tensor]:
    return load_file(Path(folder) / "model.safetensors")


@pytest.fixture
def stop_after_checkpoint(monkeypatch):
    """Interrupt training (as Ctrl-C would) right after the checkpoint of step `stop.at` is written."""
    real_save = Trainer._save_checkpoint

    def save_then_stop(self, *args, **kwargs):
        real_save(self, *args, **kwargs)
        if self.state.global_step == stop.at:
            raise KeyboardInterrupt

    class stop:
        at = 2

    monkeypatch.setattr(Trainer, "_save_checkpoint", save_then_stop)
    return stop


def test_a_stopped_run_resumes_from_its_checkpoint_to_the_same_weights(
    tmp_path, tiny_sweep, glue_hub_dir, stop_after_checkpoint
):
    recipe = FinetuneRecipe(runs=[{"seed": 1}], **tiny_sweep)
    train = dict(task=MRPC, dataset=str(glue_hub_dir))
    with pytest.raises(KeyboardInterrupt):
        finetune_ingredients(recipe, work_dir=tmp_path / "stopped", **train)
    (partial,) = (tmp_path / "stopped").glob(".*.partial")
    assert [p.name for p in (partial / "trainer").iterdir()] == ["checkpoint-2"]
    assert (partial / "trainer" / "checkpoint-2" / "ema_state.safetensors").is_file()
    assert not [p for p in (tmp_path / "stopped").iterdir() if not p.name.startswith((".", "init-"))]

    stop_after_checkpoint.at = None
    resumed = finetune_ingredients(recipe, work_dir=tmp_path / "stopped", **train)
    whole = finetune_ingredients(recipe, work_dir=tmp_path / "whole", **train)
    record = json.loads((Path(resumed[0]).parent / "run.json").read_text())
    assert record["resumed_from"] == "checkpoint-2" and record["steps"] == 4
    assert not partial.exists() and not (Path(resumed[0]).parent / "trainer").exists()
    for kind, (a, b) in zip(("raw", "ema"), zip(resumed, whole, strict=True), strict=True):
        assert Path(a).name == kind
        left, right = _weights(a), _weights(b)
        assert all(torch.equal(left[name], right[name]) for name in left), kind


def test_epoch_snapshots_are_ingredients_with_scores_and_cards(tmp_path, tiny_sweep, glue_hub_dir):
    settings = dict(tiny_sweep, max_steps=None, epochs=2, train_split="train[:24]")
    recipe = FinetuneRecipe(runs=[{"seed": 1}], ingredients=["raw", "ema", "epochs"], **settings)
    folders = finetune_ingredients(recipe, MRPC, dataset=str(glue_hub_dir), work_dir=tmp_path)
    assert [Path(f).name for f in folders] == ["raw", "ema", "epoch-1"]
    epoch, raw = _weights(folders[2]), _weights(folders[0])
    assert any(not torch.equal(epoch[name], raw[name]) for name in raw)
    record = json.loads((Path(folders[0]).parent / "run.json").read_text())
    assert set(record["scores"]) == {"raw", "ema", "epoch-1"} and record["steps"] == 6
    assert all(0 <= scores["accuracy"] <= 1 for scores in record["scores"].values())
    card = (Path(folders[2]) / "README.md").read_text()
    assert "end of epoch 1" in card and "| **epoch-1** |" in card and "hfsoup" in card


def test_an_ema_schedule_is_used_and_recorded(tmp_path, tiny_sweep, glue_hub_dir):
    from hfsoup.finetune.train import ema_callback

    assert ema_callback(FinetuneRecipe(base="b", ema_schedule="bias_correction")).settings.bias_correction
    assert ema_callback(FinetuneRecipe(base="b", ema_schedule="constant")).settings.warmup is False
    assert ema_callback(FinetuneRecipe(base="b", ema_schedule="warmup")).settings.warmup is True
    recipe = FinetuneRecipe(runs=[{"seed": 1}], ema_schedule="bias_correction", **tiny_sweep)
    _raw, ema = finetune_ingredients(recipe, MRPC, dataset=str(glue_hub_dir), work_dir=tmp_path)
    assert "bias_correction" in (Path(ema) / "README.md").read_text()


def test_a_checkpoint_left_incomplete_by_a_kill_is_skipped_with_one_warning(tmp_path, caplog):
    trainer = tmp_path / "trainer"
    for step, files in ((2, ("trainer_state.json", "ema_state.safetensors")), (4, ("model.safetensors",))):
        (trainer / f"checkpoint-{step}").mkdir(parents=True)
        for name in files:
            (trainer / f"checkpoint-{step}" / name).write_text("x")
    with caplog.at_level("WARNING", logger="hfsoup.finetune"):
        assert last_complete_checkpoint(trainer, ema=True) == str(trainer / "checkpoint-2")
    (line,) = [r.getMessage() for r in caplog.records]
    assert "checkpoint-4" in line and "trainer_state.json" in line and "older one" in line
    assert not (trainer / "checkpoint-4").exists()
    (
        trainer / "checkpoint-2" / "ema_state.safetensors"
    ).unlink()  # without its EMA state it cannot resume exactly
    assert last_complete_checkpoint(trainer, ema=True) is None
    assert last_complete_checkpoint(tmp_path / "none", ema=False) is None

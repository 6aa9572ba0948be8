"""Tests of hfsoup.finetune: each run gives its raw and EMA weights; bad settings fail first; runs resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, Trainer

from hfsoup.errors import RecipeError
from hfsoup.eval import get_task
from hfsoup.finetune import finetune_ingredients
from hfsoup.recipe import FinetuneRecipe


def test_each_run_gives_a_raw_and_an_ema_model_folder(tiny_stsb_dirs):
    assert len(tiny_stsb_dirs) == 4
    folders = [Path(folder) for folder in tiny_stsb_dirs]
    assert [folder.name for folder in folders] == ["raw", "ema", "raw", "ema"]
    assert folders[0].parent == folders[1].parent != folders[2].parent == folders[3].parent
    for folder in folders:
        assert AutoConfig.from_pretrained(folder).num_labels == 1  # STS-B is a regression
    raw, ema = (load_file(folders[index] / "model.safetensors") for index in (0, 1))
    assert raw.keys() == ema.keys()
    assert any(not torch.equal(raw[name], ema[name]) for name in raw)


def test_bad_training_argument_is_one_line_before_any_work(tmp_path):
    recipe = FinetuneRecipe(base=str(tmp_path / "no-such-base"), runs=[{"seed": 1}, {"not_an_argument": 1}])
    with pytest.raises(RecipeError) as caught:
        finetune_ingredients(recipe, get_task("mrpc"), dataset=None, work_dir=tmp_path / "runs")
    message = str(caught.value)
    assert "\n" not in message and "not_an_argument" in message and "TrainingArguments" in message
    assert not (tmp_path / "runs").exists()


@pytest.fixture
def train_calls(monkeypatch) -> list[str]:
    """Count the runs that really train (`Trainer.train`), by their output folder."""
    calls, real_train = [], Trainer.train

    def train(self, *args, **kwargs):
        calls.append(self.args.output_dir)
        return real_train(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train", train)
    return calls


def test_finished_runs_are_reused(tmp_path, train_calls, tiny_base_dir, glue_hub_dir):
    settings = dict(
        base=str(tiny_base_dir), train_split="train[:16]", max_steps=2, batch_size=8, ema_decay=0.5
    )
    task, work_dir = get_task("mrpc"), tmp_path / "runs"
    first = finetune_ingredients(
        FinetuneRecipe(runs=[{"seed": 1}], **settings), task, dataset=str(glue_hub_dir), work_dir=work_dir
    )
    assert [Path(folder).name for folder in first] == ["raw", "ema"] and len(train_calls) == 1
    assert all((Path(folder) / "model.safetensors").is_file() for folder in first)

    again = finetune_ingredients(
        FinetuneRecipe(runs=[{"seed": 1}, {"seed": 2}], **settings),
        task,
        dataset=str(glue_hub_dir),
        work_dir=work_dir,
    )
    assert again[:2] == first and len(again) == 4
    assert len(train_calls) == 2  # only the new run trained


def test_a_changed_run_is_trained_anew_and_runs_are_keyed_by_settings(
    tmp_path, train_calls, tiny_base_dir, glue_hub_dir
):
    settings = dict(
        base=str(tiny_base_dir), train_split="train[:16]", max_steps=1, batch_size=8, ema_decay=None
    )
    task, work_dir = get_task("mrpc"), tmp_path / "runs"
    first = finetune_ingredients(
        FinetuneRecipe(runs=[{"seed": 1}, {"seed": 2}], **settings),
        task,
        dataset=str(glue_hub_dir),
        work_dir=work_dir,
    )
    # The same runs listed in the other order, one of them changed: only the changed one trains.
    second = finetune_ingredients(
        FinetuneRecipe(runs=[{"seed": 2}, {"seed": 1, "learning_rate": 1e-3}], **settings),
        task,
        dataset=str(glue_hub_dir),
        work_dir=work_dir,
    )
    assert second[0] == first[1] and second[1] not in first
    assert len(train_calls) == 3


def _heads(folders: list[str]) -> list[torch.Tensor]:
    return [
        load_file(Path(folder) / "model.safetensors")["classifier.weight"].flatten() for folder in folders
    ]


def test_every_run_starts_from_one_shared_head(tmp_path, tiny_base_dir, glue_hub_dir):
    # STS-B needs a 1-output head the 2-label tiny base lacks, so each run must get a new one: drawn once and
    # shared (head_seed, the default), or drawn per run (head_seed None). A learning rate of 1e-12 keeps each
    # run's head where it started, so the saved heads show the starting points.
    settings = dict(
        base=str(tiny_base_dir), runs=[{"seed": 1}, {"seed": 2}], train_split="train[:16]", max_steps=1,
        batch_size=8, ema_decay=None, learning_rate=1e-12,
    )  # fmt: skip
    task = get_task("stsb")
    shared = finetune_ingredients(
        FinetuneRecipe(**settings), task, dataset=str(glue_hub_dir), work_dir=tmp_path / "shared"
    )
    independent = finetune_ingredients(
        FinetuneRecipe(**settings, head_seed=None, head_init="random"),
        task,
        dataset=str(glue_hub_dir),
        work_dir=tmp_path / "own",
    )

    (init,) = (tmp_path / "shared").glob("init-*")
    start = load_file(init / "model.safetensors")["classifier.weight"].flatten()
    for head in _heads(shared):
        assert torch.allclose(head, start, atol=1e-6)
    for folder in {Path(f).parent for f in shared}:  # each run records, and its card names, the probed start
        assert json.loads((folder / "run.json").read_text())["start"]["head_init"] == "linear_probe"
        assert "linear-probed head" in (folder / "raw" / "README.md").read_text()
    a, b = _heads(independent)
    assert not torch.allclose(a, b, atol=1e-3)
    assert not list((tmp_path / "own").glob("init-*"))


def test_a_training_argument_of_the_wrong_type_is_one_line_before_any_work(tmp_path):
    recipe = FinetuneRecipe(base=str(tmp_path / "no-such-base"), runs=[{"learning_rate": "fast"}])
    with pytest.raises(RecipeError, match=r"finetune.runs.learning_rate must be a number, got 'fast'"):
        finetune_ingredients(recipe, get_task("mrpc"), dataset=None, work_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()

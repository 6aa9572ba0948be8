"""Checkpoints the Trainer pushes to the Hub (`push_to_hub=True`, `hub_strategy`) hold the EMA state.

The Trainer pushes a checkpoint from inside its checkpoint step, before `on_save` runs, so the EMA state must
already be in the folder then. Runs against the local Hub-compatible server of hub_server.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import transformers.utils.hub
from datasets import Dataset
from hub_server import HubServer
from safetensors import safe_open
from tiny_models import tiny_bert
from transformers import Trainer, TrainerCallback, TrainingArguments

from hfsoup import EmaTrainerCallback, ModelEma
from hfsoup.ema.callback import EMA_STATE_NAME

REPO = "alice/ema-run"


def toy_dataset(rows: int) -> Dataset:
    ids = np.random.default_rng(0).integers(5, 60, size=(rows, 12))
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": (ids == 7).any(axis=1).astype(np.int64)})


class PushProbe(TrainerCallback):
    """Whether the checkpoint folder held the EMA state when the Trainer began each push."""

    def __init__(self):
        self.ready: dict[int, bool] = {}

    def on_push_begin(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        self.ready[state.global_step] = (folder / EMA_STATE_NAME).is_file()


def ema_state_step(data: bytes, tmp_path) -> int:
    """The `last_step` of an EMA state file's bytes, read back with `ModelEma.load`."""
    path = tmp_path / "pushed.safetensors"
    path.write_bytes(data)
    with safe_open(str(path), framework="pt") as handle:
        assert "hfsoup_ema" in (handle.metadata() or {})
    ema = ModelEma(tiny_bert(seed=0), decay=0.9)
    ema.load(path)
    return ema.last_step


# Where each hub_strategy puts the checkpoint of a step in the repo.
FOLDERS = {"checkpoint": "last-checkpoint", "all_checkpoints": "checkpoint-{step}"}


@pytest.mark.parametrize("strategy", sorted(FOLDERS))
def test_pushed_checkpoints_hold_the_ema_state(hub, tmp_path, monkeypatch, strategy):
    # transformers pushes through one shared HfApi, which keeps the endpoint it was built with: build a new
    # one for this test's Hub (monkeypatch puts the old one back after).
    monkeypatch.setattr(transformers.utils.hub, "_hf_api", None)
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=8,
        per_device_train_batch_size=8,
        learning_rate=5e-3,
        save_strategy="steps",
        save_steps=4,
        push_to_hub=True,
        hub_model_id=REPO,
        hub_token=HubServer.ALICE,
        hub_strategy=strategy,
        hub_always_push=True,  # push every checkpoint, even while the previous push is still running
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    probe = PushProbe()
    trainer = Trainer(
        model=tiny_bert(seed=0),
        args=args,
        train_dataset=toy_dataset(64),
        callbacks=[EmaTrainerCallback(decay=0.9), probe],
    )
    trainer.train()

    assert probe.ready == {4: True, 8: True}  # in the folder before each push began
    repo = hub.repos[REPO]
    checkpoint_commits = [c for c in repo.commits.values() if c.title.endswith(", checkpoint")]
    assert len(checkpoint_commits) == 2
    for step in (4, 8):
        path = f"{FOLDERS[strategy].format(step=step)}/{EMA_STATE_NAME}"
        commit = next(
            c for c in checkpoint_commits if c.title.startswith(f"Training in progress, step {step},")
        )
        assert path in commit.files, sorted(commit.files)
        assert ema_state_step(commit.files[path], tmp_path) == step
    latest = f"{FOLDERS[strategy].format(step=8)}/{EMA_STATE_NAME}"  # pushes run in order, on one worker
    assert ema_state_step(repo.resolve("main").files[latest], tmp_path) == 8

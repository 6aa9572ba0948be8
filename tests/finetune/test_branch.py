"""Tests of hfsoup.finetune.branch: where the trunk of a branched sweep stops, and how it is keyed.
(The trunk trained and the runs branching from it, bit for bit: tests/test_cli_finetune.py.)"""

from __future__ import annotations

import pytest

from hfsoup.eval import get_task
from hfsoup.finetune.branch import trunk_checkpoint, trunk_plan
from hfsoup.finetune.plan import plan_runs
from hfsoup.recipe import FinetuneRecipe


@pytest.mark.parametrize(
    ("fields", "rows", "until"),
    [
        ({"max_steps": 10, "branch_at": 0.3}, 100, 3),
        ({"epochs": 2.0, "batch_size": 8, "branch_at": 0.5}, 36, 5),  # 5 steps an epoch, 10 in all
        ({"max_steps": 2, "branch_at": 0.1}, 100, 1),  # at least one shared step, at most all but one
        ({"max_steps": 2, "branch_at": 0.9}, 100, 1),
    ],
)
def test_the_trunk_stops_at_its_share_of_the_run_s_steps(tmp_path, fields, rows, until):
    recipe = FinetuneRecipe(base="b", grid={"seed": [1, 2]}, **fields)
    plans = plan_runs(recipe, get_task("mrpc"), None, tmp_path)
    trunk = trunk_plan(recipe, get_task("mrpc"), None, tmp_path, plans[0], rows)
    assert trunk.overrides == {"seed": 1, "trunk_until": until}
    assert trunk.folder.name.startswith("trunk-") and trunk.key not in {plan.key for plan in plans}
    assert trunk_checkpoint(trunk) == trunk.folder / f"checkpoint-{until}"


def test_another_branching_point_is_another_trunk(tmp_path):
    keys = set()
    for branch_at in (0.3, 0.5):
        recipe = FinetuneRecipe(base="b", grid={"seed": [1, 2]}, max_steps=10, branch_at=branch_at)
        plans = plan_runs(recipe, get_task("mrpc"), None, tmp_path)
        keys.add(trunk_plan(recipe, get_task("mrpc"), None, tmp_path, plans[0], 100).key)
    assert len(keys) == 2


def test_the_trunk_saves_its_checkpoint_once_when_it_stops_mid_epoch(tmp_path):
    from datasets import Dataset
    from tiny_models import tiny_bert
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from hfsoup.finetune.branch import _StopAt

    class Saves(TrainerCallback):
        def __init__(self):
            self.steps = []

        def on_save(self, args, state, control, **kwargs):
            self.steps.append(state.global_step)

    rows = Dataset.from_dict({"input_ids": [[2, 5, 6, 3]] * 40, "labels": [0, 1] * 20})
    args = TrainingArguments(
        output_dir=str(tmp_path), num_train_epochs=2, per_device_train_batch_size=8, save_strategy="epoch",
        report_to="none", disable_tqdm=True,
    )  # fmt: skip
    saves = Saves()
    trainer = Trainer(model=tiny_bert(seed=0), args=args, train_dataset=rows, callbacks=[_StopAt(3), saves])
    trainer.train()
    assert trainer.state.global_step == 3 and saves.steps == [3]  # 5 steps an epoch: stopped in the first
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-3"]

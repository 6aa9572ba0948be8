"""Tests of hfsoup.finetune.plan: grids become runs, runs are keyed by their settings, arguments are checked."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from hfsoup.errors import RecipeError
from hfsoup.eval import get_task
from hfsoup.finetune import plan as plan_module
from hfsoup.finetune.plan import plan_runs, run_key, run_name
from hfsoup.recipe import FinetuneRecipe

MRPC = get_task("mrpc")


def test_a_grid_is_the_product_of_its_values_times_each_run():
    recipe = FinetuneRecipe(base="b", grid={"seed": [1, 2], "learning_rate": [1e-4, 5e-5]})
    assert recipe.points == [
        {"learning_rate": 1e-4, "seed": 1},
        {"learning_rate": 1e-4, "seed": 2},
        {"learning_rate": 5e-5, "seed": 1},
        {"learning_rate": 5e-5, "seed": 2},
    ]
    both = FinetuneRecipe(
        base="b", grid={"seed": [1, 2]}, runs=[{"weight_decay": 0.0}, {"weight_decay": 0.1}]
    )
    assert len(both.points) == 4 and {"weight_decay": 0.1, "seed": 2} in both.points
    assert FinetuneRecipe(base="b").points == [{"seed": 1}, {"seed": 2}]
    assert FinetuneRecipe(base="b", ingredients=["raw", "ema", "epochs"], epochs=3).ingredients_per_run == 4


def test_changing_one_run_changes_only_its_key_and_pushing_changes_none():
    before = FinetuneRecipe(base="b", runs=[{"seed": 1}, {"seed": 2}])
    after = FinetuneRecipe(base="b", runs=[{"seed": 1}, {"seed": 2, "learning_rate": 1e-4}])
    keys = [[run_key(r, MRPC, None, point) for point in r.points] for r in (before, after)]
    assert keys[0][0] == keys[1][0] and keys[0][1] != keys[1][1]
    pushed = FinetuneRecipe(base="b", runs=[{"seed": 1}, {"seed": 2}], push_to_hub="alice/x", private=False)
    assert [run_key(pushed, MRPC, None, p) for p in pushed.points] == keys[0]
    shared = FinetuneRecipe(base="b", runs=[{"seed": 1}, {"seed": 2}], epochs=4)
    assert run_key(shared, MRPC, None, {"seed": 1}) != keys[0][0]
    assert run_key(before, MRPC, "other/data", {"seed": 1}) != keys[0][0]


def test_run_names_are_readable_and_valid_repository_names():
    assert run_name({"learning_rate": 1e-4, "seed": 3}, "abc") == "lr0.0001-seed3-abc"
    assert run_name({"lr_scheduler_type": "cosine/x=1"}, "k") == "lr_scheduler_typecosinex1-k"
    assert run_name({}, "k") == "run-k"


def test_runs_are_folders_named_by_key_with_a_hidden_partial_beside(tmp_path):
    recipe = FinetuneRecipe(base="b", max_steps=8, grid={"seed": [1, 2]})
    plans = plan_runs(recipe, MRPC, None, tmp_path)
    assert [p.folder.parent for p in plans] == [tmp_path, tmp_path]
    assert plans[0].name.startswith("seed1-") and plans[0].partial.name == f".{plans[0].name}.partial"
    assert Path(plans[0].args.output_dir) == plans[0].partial / "trainer"
    assert plans[0].args.save_steps == 2 and plans[0].args.save_total_limit == 1 and plans[0].args.seed == 1
    assert not plans[0].done


def test_trainer_settings_come_from_training_then_the_run(tmp_path):
    recipe = FinetuneRecipe(
        base="b", training={"weight_decay": 0.1, "warmup_steps": 0.1}, runs=[{"weight_decay": 0.2}]
    )
    (plan,) = plan_runs(recipe, MRPC, None, tmp_path)
    assert plan.args.weight_decay == 0.2 and plan.args.warmup_steps == 0.1
    assert (
        plan.args.num_train_epochs == 3.0 and plan.args.max_steps == -1 and plan.args.save_strategy == "epoch"
    )


@pytest.mark.parametrize(
    ("recipe", "fragment"),
    [
        (dict(training={"not_an_argument": 1}), "not_an_argument"),
        (dict(training={"weight_decay": "lots"}), "finetune.training.weight_decay"),
        (dict(runs=[{"seed": 1}, {"seed": 1}]), "same settings"),
    ],
)
def test_bad_settings_are_one_line_before_any_work(tmp_path, recipe, fragment):
    with pytest.raises(RecipeError) as caught:
        plan_runs(FinetuneRecipe(base="b", **recipe), MRPC, None, tmp_path / "runs")
    assert "\n" not in str(caught.value) and fragment in str(caught.value)
    assert not (tmp_path / "runs").exists()


def test_a_run_s_key_covers_its_data_s_columns_labels_and_the_base_s_weights(tmp_path, tiny_base_dir):
    recipe = FinetuneRecipe(base=str(tiny_base_dir))
    mrpc = get_task("mrpc")
    key = run_key(recipe, mrpc, None, {"seed": 1})
    one_column = dataclasses.replace(mrpc, text_columns=("sentence1",))
    other_label = dataclasses.replace(mrpc, label_column="idx")
    three_labels = dataclasses.replace(mrpc, label_names=("a", "b", "c"))
    for task in (one_column, other_label, three_labels):
        assert run_key(recipe, task, None, {"seed": 1}) != key
    base = tmp_path / "base"
    shutil.copytree(tiny_base_dir, base)
    before = run_key(FinetuneRecipe(base=str(base)), mrpc, None, {"seed": 1})
    weights = load_file(base / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 1e-3  # the same folder, other weights
    save_file(weights, base / "model.safetensors", metadata={"format": "pt"})
    plan_module.weights_hash.cache_clear()
    assert run_key(FinetuneRecipe(base=str(base)), mrpc, None, {"seed": 1}) != before


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"grid": {"seed": [1], "num_train_epochs": [0]}}, "num_train_epochs must be > 0"),
        ({"runs": [{"num_train_epochs": 0}]}, "num_train_epochs must be > 0"),
        ({"training": {"output_dir": "shared"}}, "finetune.training.output_dir"),
        ({"runs": [{"output_dir": "x"}]}, "finetune.runs.output_dir"),
        ({"grid": {"learning_rate": [-1e-4]}}, "learning_rate must be > 0"),
        ({"runs": [{"per_device_train_batch_size": 0}]}, "per_device_train_batch_size must be > 0"),
        ({"grid": {}}, "empty mapping"),
        ({"runs": [{"seed": 1}], "grid": {"seed": [2, 3]}}, "both set seed"),
        ({"ingredients": ["raw", "epochs"], "epochs": 1}, "leave no earlier epoch"),
        ({"runs": [{"max_steps": 0}]}, "max_steps 0 trains nothing"),
    ],
)
def test_run_settings_that_make_a_run_meaningless_are_refused_before_any_work(fields, fragment):
    with pytest.raises(RecipeError) as caught:
        FinetuneRecipe(base="b", **fields)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_without_a_gpu_runs_do_not_ask_for_pinned_memory_which_torch_would_warn_of_per_run(tmp_path):
    import torch

    (plan,) = plan_runs(FinetuneRecipe(base="b", runs=[{"seed": 1}]), get_task("mrpc"), None, tmp_path)
    assert plan.args.dataloader_pin_memory is torch.accelerator.is_available()
    (plan,) = plan_runs(
        FinetuneRecipe(base="b", runs=[{"seed": 1}], training={"dataloader_pin_memory": True}),
        get_task("mrpc"),
        None,
        tmp_path,
    )
    assert plan.args.dataloader_pin_memory is True  # the recipe's own choice wins


def test_under_a_launcher_the_batch_must_split_evenly_between_the_processes(tmp_path):
    with pytest.raises(RecipeError, match="batch size 9 does not split evenly between the 2 processes"):
        plan_runs(FinetuneRecipe(base="b", batch_size=9), get_task("mrpc"), None, tmp_path, processes=2)


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"branch_at": 1.0}, "branch_at must be a fraction of the steps in (0, 1), got 1.0"),
        (
            {"branch_at": 0.3, "grid": {"seed": [1, 2], "learning_rate": [1e-4, 5e-5]}},
            "also set learning_rate",
        ),
        ({"branch_at": 0.3, "ingredients": ["raw", "epochs"]}, "do not go together"),
    ],
)
def test_branched_runs_differ_in_their_seed_alone(fields, fragment):
    with pytest.raises(RecipeError) as caught:
        FinetuneRecipe(base="b", **fields)
    assert fragment in str(caught.value)

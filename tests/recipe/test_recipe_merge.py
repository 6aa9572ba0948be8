"""Tests of hfsoup.recipe.merge (and of a merge recipe that trains, a sweep): recipes from YAML and flags check every field, in one line naming field and value."""

from __future__ import annotations

import pytest
from cli_helpers import user_error

from hfsoup.errors import RecipeError
from hfsoup.recipe import FinetuneRecipe, MergeRecipe, SweepRecipe, load_merge_or_sweep, load_recipe

GOOD = "task: mrpc\nmodels: [runs/a, runs/b]\n"


def recipe_error(tmp_path, text: str) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RecipeError) as caught:
        load_merge_or_sweep(path)
    message = str(caught.value)
    assert "\n" not in message and message.count(str(path)) == 1
    return message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD + "batch_size: sixteen\n", ["batch_size", "'sixteen'", "whole number"]),
        ("task: mrpc\nmodels: runs/a\n", ["models", "'runs/a'", "list of strings"]),
        (GOOD + "method: weighted\nweights: '0.5 0.5'\n", ["weights", "'0.5 0.5'", "list of numbers"]),
        ("task: [mrpc]\nmodels: [runs/a]\n", ["task", "['mrpc']", "string"]),
        ("task: mrpc\nmodels: [runs/a, 17]\n", ["models[1]", "17", "string"]),
        (GOOD + "seed: 1.5\n", ["seed", "1.5", "whole number"]),
        (GOOD + "seeds: 3\n", ["unknown field", "'seeds'", "seed"]),
        ("models: [runs/a]\n", ["'greedy' needs data to score on", "--task", "--method uniform"]),
        (GOOD + "finetune: 3\n", ["finetune", "3", "mapping"]),
        (GOOD + "max_length: true\n", ["max_length", "True", "whole number"]),
        (GOOD + "finetune: {base: b, runs: [3]}\n", ["finetune.runs[0]", "3", "mapping"]),
        (GOOD + "finetune: {base: b, learning_rate: fast}\n", ["finetune.learning_rate", "'fast'", "number"]),
        (GOOD + "finetune: {runs: [{seed: 1}]}\n", ["finetune", "'base'"]),
        ("- task: mrpc\n", ["mapping"]),
    ],
)
def test_wrong_field_is_one_line_naming_field_and_value(tmp_path, text, expected):
    message = recipe_error(tmp_path, text)
    for part in expected:
        assert part in message, (part, message)


def test_good_yaml_recipe_and_overrides(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(GOOD + "method: weighted\nweights: [1, 3]\n")
    recipe = load_recipe(path, batch_size=8, seed=None)
    assert recipe.weights == [1.0, 3.0] and all(isinstance(w, float) for w in recipe.weights)
    assert recipe.batch_size == 8 and recipe.seed == 0
    assert load_recipe(path, models=["runs/c", "runs/d"]).models == ["runs/c", "runs/d"]
    path.write_text(GOOD + "finetune: {base: b, max_steps: 4}\n")
    recipe = load_merge_or_sweep(path)  # a merge that trains its ingredients is a sweep: one door to training
    assert isinstance(recipe, SweepRecipe) and recipe.soup.models == ["runs/a", "runs/b"]
    assert isinstance(recipe.finetune, FinetuneRecipe) and recipe.finetune.max_steps == 4
    assert recipe.ingredient_count == 2 + 2 * 2  # each run gives its raw and its EMA weights


@pytest.mark.parametrize(
    "weights", [[0.0, 0.0], [-1.0, 2.0], [float("nan"), 1.0], [float("inf"), 1.0]], ids=str
)
def test_weights_must_be_finite_non_negative_with_a_positive_sum(weights):
    with pytest.raises(RecipeError, match="finite numbers >= 0 with a positive sum"):
        MergeRecipe(task="mrpc", models=["a", "b"], method="weighted", weights=weights)


@pytest.mark.parametrize("weights", [["0", "0"], ["-1", "2"]], ids=["zero-sum", "negative"])
def test_bad_weights_fail_before_any_model_is_read(capsys, tmp_path, weights):
    missing = [
        tmp_path / "missing-1",
        tmp_path / "missing-2",
    ]  # reading them would fail: they must not be read
    line = user_error(
        capsys, "merge", *missing, "--task", "mrpc", "--method", "weighted", "--weights", *weights
    )
    assert "--weights must be finite numbers >= 0" in line and "No model folder" not in line


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"task": "squad"}, "unknown task 'squad'"),
        ({"method": "median"}, "median"),
        ({"models": []}, "at least one model"),
        ({"method": "weighted"}, "needs --weights"),
        ({"weights": [1.0, 1.0]}, "goes with --method weighted"),
        ({"selection_split": "validation", "report_split": "validation"}, "pick two different splits"),
        ({"batch_size": 0}, "at least 1"),
        ({"learned_epochs": 3}, r"learned_epochs go\(es\) with method learned"),
        ({"method": "learned", "learned_epochs": 0}, "learned_epochs must be at least 1"),
        (
            {"method": "learned", "learned_learning_rate": 0.0},
            "learned_learning_rate must be a finite number > 0",
        ),
        ({"method": "learned", "learned_coefficients": {"all": [1.0]}}, "has 1 values for 2 models"),
        ({"text_columns": ["a", "b", "c"]}, "one or two columns"),
        ({"task": None, "dataset": "reviews.csv"}, "needs --text-column"),
        ({"task": None, "label_column": "stars", "method": "uniform"}, "add --dataset"),
    ],
)
def test_wrong_values_are_recipe_errors(fields, expected):
    with pytest.raises(RecipeError, match=expected):
        MergeRecipe(**{"task": "mrpc", "models": ["a", "b"], **fields}).check_models()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"runs": []}, "non-empty list"),
        ({"max_steps": 0}, "at least 1"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"learning_rate": 0}, "learning_rate"),
    ],
)
def test_wrong_finetune_values_are_recipe_errors(fields, expected):
    with pytest.raises(RecipeError, match=expected):
        FinetuneRecipe(base="b", **fields)


def test_missing_recipe_file_and_bad_yaml(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    assert "not valid YAML at line" in recipe_error(tmp_path, "task: [unclosed\n")


def test_a_recipe_scores_on_a_task_a_dataset_or_nothing():
    assert MergeRecipe(task="mrpc", models=["a"]).scored
    custom = MergeRecipe(models=["a"], dataset="nli.jsonl", text_columns=["premise", "hypothesis"])
    assert custom.scored and custom.to_dict()["text_columns"] == ["premise", "hypothesis"]
    assert not MergeRecipe(models=["a", "b"], method="uniform").scored


def test_cli_without_task_or_recipe_needs_a_method_that_does_not_score(capsys, tmp_path):
    line = user_error(capsys, "merge", tmp_path / "model")
    assert "'greedy' needs data to score on" in line and "--task" in line and "--dataset" in line


def test_cli_recipe_error_names_the_file_and_field(capsys, tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(GOOD + "batch_size: sixteen\n")
    line = user_error(capsys, "merge", "--recipe", path)
    assert str(path) in line and "batch_size" in line and "'sixteen'" in line


def test_a_learned_soup_yaml_replays_its_coefficients_unless_its_fit_is_overridden(tmp_path):
    path = tmp_path / "soup.yaml"
    coefficients = {"all": [0.1 + 1 / 3, 0.9 - 1 / 3]}
    path.write_text(
        "format: hfsoup-soup/1\n"
        "recipe: {task: mrpc, models: [runs/a, runs/b], method: learned, learned_epochs: 2}\n"
        f"coefficients: {coefficients}\n",
        encoding="utf-8",
    )
    recipe = load_recipe(path)
    assert recipe.learned_coefficients == coefficients and recipe.learned_epochs == 2
    assert load_recipe(path, batch_size=8).learned_coefficients == coefficients
    assert load_recipe(path, learned_epochs=3).learned_coefficients is None  # another fit: fit anew
    assert load_recipe(path, learned_per_layer=True).learned_coefficients is None
    with pytest.raises(RecipeError, match=r"learned_epochs go\(es\) with method learned"):
        load_recipe(path, method="greedy")  # the recorded coefficients are dropped, the user's setting is not

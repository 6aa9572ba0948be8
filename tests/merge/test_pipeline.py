"""The merge pipeline: results, staging, replays, what it hands the card, and the real MiniLM recipe (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from cli_helpers import QUICK_SPLITS, copy_folders, quick_mrpc, run, user_error
from huggingface_hub import ModelCard
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hfsoup.errors import RecipeError
from hfsoup.eval import get_task, load_split
from hfsoup.eval.scoring import Scorer
from hfsoup.finetune import run_finetune
from hfsoup.merge import run_merge
from hfsoup.merge.record import _common_base
from hfsoup.recipe import FinetuneRecipe, MergeRecipe, SweepRecipe, load_recipe
from hfsoup.result import BEST, ENSEMBLE, SOUP, UNIFORM
from hfsoup.soup.methods.exhaustive import rank_key
from hfsoup.staging import staged


def quick_splits(glue_hub_dir: Path) -> dict:
    """The recipe fields of the quick MRPC merges of tests/cli_helpers.py."""
    return {"dataset": str(glue_hub_dir), "selection_split": QUICK_SPLITS[1], "report_split": QUICK_SPLITS[3]}


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
    # A merge that trains its ingredients goes through the sweep (the one door to training), as `merge --recipe`.
    sweep = SweepRecipe(
        task="mrpc",
        dataset=str(glue_hub_dir),
        output_dir=str(tmp_path / "soup-ingredients"),
        soup={"output_dir": str(tmp_path / "soup")},
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
    merge = run_finetune(sweep, progress=False).merge
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


# --- replays of soup.yaml check local folders' contents -------------------------------------------------------


def test_replay_refuses_a_local_ingredient_whose_weights_changed(
    capsys, tmp_path, tiny_ingredient_dirs, glue_hub_dir
):
    models = copy_folders(tiny_ingredient_dirs[:2], tmp_path / "models")
    first = tmp_path / "first"
    code, _, err = run(capsys, "merge", *quick_mrpc(models, glue_hub_dir), "--output-dir", first)
    assert code == 0, err
    recorded = yaml.safe_load((first / "soup.yaml").read_text())["ingredients"]
    assert [i["content_hash"][:7] for i in recorded] == ["sha256:"] * 2

    code, _, err = run(capsys, "merge", "--recipe", first / "soup.yaml", "--output-dir", tmp_path / "same")
    assert code == 0, err  # unchanged folders replay

    weights = load_file(models[1] / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 1e-3  # still a loadable model, with other weights
    save_file(weights, models[1] / "model.safetensors", metadata={"format": "pt"})
    line = user_error(capsys, "merge", "--recipe", first / "soup.yaml", "--output-dir", tmp_path / "changed")
    assert str(models[1]) in line and "changed" in line and str(models[0]) not in line
    assert not (tmp_path / "changed").exists()


# --- what the pipeline tells the card: common base, license, one uniform row ------------------------------


def with_card(folders: list[Path], front_matter: list[str]) -> None:
    for folder, text in zip(folders, front_matter, strict=True):
        (folder / "README.md").write_text(f"---\n{text}---\n\n# A fine-tune\n")


def test_card_names_the_declared_common_base_and_license(tmp_path, tiny_ingredient_dirs, glue_hub_dir):
    models = copy_folders(tiny_ingredient_dirs[:2], tmp_path / "models")
    with_card(models, ["base_model: org/bert-base\nlicense: apache-2.0\n"] * 2)
    recipe = MergeRecipe(task="mrpc", models=[str(m) for m in models], **quick_splits(glue_hub_dir))
    merge = run_merge(recipe, output_dir=tmp_path / "soup", progress=False)
    assert (merge.result.base_model, merge.result.license) == ("org/bert-base", "apache-2.0")
    card = ModelCard.load(tmp_path / "soup" / "README.md")
    assert card.data.base_model == ["org/bert-base"] and card.data.base_model_relation == "finetune"
    assert card.data.license == "apache-2.0"
    assert card.data.get("datasets") is None  # a local dataset is not a Hub dataset
    for entry in card.data.eval_results:
        assert str(glue_hub_dir) not in entry.dataset_name and entry.dataset_type == glue_hub_dir.name
    assert str(glue_hub_dir) not in card.text.split("## Reproduce")[0]


def test_disagreeing_cards_name_no_base_and_no_license(tmp_path, tiny_ingredient_dirs, glue_hub_dir):
    models = copy_folders(tiny_ingredient_dirs[:2], tmp_path / "models")
    with_card(models, ["base_model: org/bert-base\nlicense: mit\n", "base_model: org/other\n"])
    recipe = MergeRecipe(task="mrpc", models=[str(m) for m in models], **quick_splits(glue_hub_dir))
    result = run_merge(recipe, progress=False).result
    assert (result.base_model, result.license) == (None, None)


def test_base_given_as_a_hub_id_is_the_common_base():
    recipe = MergeRecipe(task="mrpc", models=["a"], base="org/bert-base@v2")
    assert _common_base(recipe, []) == "org/bert-base"


def test_uniform_method_reports_the_uniform_soup_once(capsys, tmp_path, tiny_ingredient_dirs, glue_hub_dir):
    out_dir = tmp_path / "soup"
    code, out, err = run(
        capsys,
        "merge",
        *quick_mrpc(tiny_ingredient_dirs[:2], glue_hub_dir),
        "--method",
        "uniform",
        "--output-dir",
        out_dir,
    )
    assert code == 0, err
    assert sum("uniform soup" in line for line in out.splitlines()) == 1
    text = (out_dir / "README.md").read_text()
    assert text.count("| **Soup (uniform)** |") == 1 and "Uniform soup (all ingredients)" not in text
    assert set(yaml.safe_load((out_dir / "soup.yaml").read_text())["results"]) == {SOUP, BEST, ENSEMBLE}


@pytest.fixture
def independent_heads(tmp_path, tiny_ingredient_dirs) -> list[Path]:
    """Two ingredients of one backbone whose classifier weights were each drawn anew (issue 11)."""
    folders = copy_folders(tiny_ingredient_dirs[:2], tmp_path / "drawn")
    for index, folder in enumerate(folders):
        weights = load_file(folder / "model.safetensors")
        generator = torch.Generator().manual_seed(200 + index)
        weights["classifier.weight"] = (
            torch.randn(weights["classifier.weight"].shape, generator=generator) * 0.02
        )
        save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folders


@pytest.mark.parametrize("method", ["uniform", "weighted"])
def test_uniform_or_weighted_soup_of_independent_heads_is_refused(
    capsys, independent_heads, glue_hub_dir, method
):
    weights = ["--weights", "1", "1"] if method == "weighted" else []
    line = user_error(
        capsys, "merge", *quick_mrpc(independent_heads, glue_hub_dir), "--method", method, *weights
    )
    assert "independently initialized" in line and "--allow-independent-heads" in line and "head_seed" in line


def test_independent_heads_allowed_explicitly_or_souped_greedily_with_a_warning(
    capsys, caplog, independent_heads, glue_hub_dir
):
    merge = quick_mrpc(independent_heads, glue_hub_dir)
    code, _out, err = run(capsys, "merge", *merge, "--method", "uniform", "--allow-independent-heads")
    assert code == 0, err

    with caplog.at_level("WARNING", logger="hfsoup"):
        code, _out, err = run(capsys, "merge", *merge)
    assert code == 0, err
    assert any("will likely keep one ingredient" in r.getMessage() for r in caplog.records)


def test_shared_heads_are_souped_without_the_warning(capsys, caplog, tiny_ingredient_dirs, glue_hub_dir):
    with caplog.at_level("WARNING", logger="hfsoup"):
        code, _out, err = run(
            capsys, "merge", *quick_mrpc(tiny_ingredient_dirs[:2], glue_hub_dir), "--method", "uniform"
        )
    assert code == 0, err
    assert not any("independently initialized" in r.getMessage() for r in caplog.records)


# --- the subset search, end to end -----------------------------------------------------------------------------


def test_exhaustive_method_keeps_the_best_subset_and_reports_the_top(
    caplog, tmp_path, tiny_ingredient_dirs, glue_hub_dir
):
    recipe = MergeRecipe(
        task="mrpc",
        models=[str(m) for m in tiny_ingredient_dirs],
        method="exhaustive",
        batch_size=8,
        **quick_splits(glue_hub_dir),
    )
    with caplog.at_level("INFO", logger="hfsoup"):
        result = run_merge(recipe, output_dir=tmp_path / "soup", progress=False).result
    messages = [r.getMessage() for r in caplog.records]
    # MRPC's score (mean of F1 and accuracy, of the shipped metric) has an exact bound: passes may stop early.
    assert any("7 subsets of 3 ingredients, 4 scoring passes" in m and "stopped once" in m for m in messages)
    top = result.top_subsets
    assert result.method == "exhaustive" and len(top) == 5 and top == sorted(top, key=rank_key)
    assert len({tuple(s.indices) for s in top}) == 5
    assert result.order_added == top[0].indices
    assert [r.selected for r in result.ingredients] == [i in top[0].indices for i in range(3)]
    assert sum(r.weight for r in result.ingredients) == pytest.approx(1.0)
    for subset in top:  # single ingredients keep the scores they were measured with
        if len(subset.indices) == 1:
            assert subset.score == result.ingredients[subset.indices[0]].scores["selection"]["score"]
    assert result.candidates[SOUP]["selection"]["score"] == pytest.approx(top[0].score, abs=1e-6)
    soup = yaml.safe_load((tmp_path / "soup" / "soup.yaml").read_text())
    assert [s["ingredients"] for s in soup["top_subsets"]] == [s.indices for s in top]
    assert soup["method"]["name"] == "exhaustive"
    assert "## Subset search" in (tmp_path / "soup" / "README.md").read_text()


# --- model_stock around a base, and the soup's gain with its interval ---------------------------------------


def test_model_stock_soups_around_the_base_and_the_gain_has_a_replayable_interval(
    tmp_path, tiny_base_dir, tiny_ingredient_dirs, glue_hub_dir
):
    models = [str(folder) for folder in tiny_ingredient_dirs]
    recipe = MergeRecipe(
        task="mrpc",
        models=models,
        method="model_stock",
        base=str(tiny_base_dir),
        **quick_splits(glue_hub_dir),
    )
    merge = run_merge(recipe, output_dir=tmp_path / "soup", progress=False)
    result = merge.result
    assert result.method == "model_stock" and result.method_paper == "https://arxiv.org/abs/2403.19522"
    gain = result.gain
    assert gain["split"] == "report" and gain["resamples"] == 1000 and gain["seed"] == recipe.seed
    assert gain["low"] <= gain["soup_minus_best"] <= gain["high"]
    report = result.candidates[SOUP]["report"]["score"] - result.candidates[BEST]["report"]["score"]
    assert gain["soup_minus_best"] == pytest.approx(report)
    card = (tmp_path / "soup" / "README.md").read_text()
    assert "How sure the gain is" in card and "2403.19522" in card
    recorded = yaml.safe_load((tmp_path / "soup" / "soup.yaml").read_text())
    assert recorded["gain"]["low"] == pytest.approx(gain["low"]) and recorded["recipe"]["base"] == str(
        tiny_base_dir
    )
    again = run_merge(
        load_recipe(tmp_path / "soup" / "soup.yaml"), output_dir=tmp_path / "again", progress=False
    )
    assert again.result.gain == gain
    assert (tmp_path / "soup" / "model.safetensors").read_bytes() == (
        tmp_path / "again" / "model.safetensors"
    ).read_bytes()


def test_model_stock_without_a_base_is_one_line_before_any_work(tmp_path, tiny_ingredient_dirs, glue_hub_dir):
    recipe = MergeRecipe(task="mrpc", models=[str(f) for f in tiny_ingredient_dirs], method="model_stock")
    with pytest.raises(RecipeError, match="needs --base"):
        run_merge(recipe, output_dir=tmp_path / "soup", progress=False)
    assert not (tmp_path / "soup").exists()

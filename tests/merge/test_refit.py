"""Tests of hfsoup.merge.refit (`--refit-head`): backbones averaged exactly, a head fitted anew, said in the card."""

from __future__ import annotations

import pytest
import torch
from cli_helpers import QUICK_SPLITS, run
from safetensors.torch import load_file, save_file

from hfsoup.errors import DatasetError, RecipeError
from hfsoup.merge import run_merge
from hfsoup.recipe import MergeRecipe
from hfsoup.result import AVERAGED_HEAD, SOUP


@pytest.fixture
def independent_heads(tmp_path, tiny_ingredient_dirs):
    """Two tiny fine-tunes of one backbone whose heads were drawn independently, as two people's runs."""
    import shutil

    folders = []
    for seed, source in enumerate(tiny_ingredient_dirs[:2]):
        folder = tmp_path / f"run{seed}"
        shutil.copytree(source, folder)
        weights = load_file(folder / "model.safetensors")
        generator = torch.Generator().manual_seed(1000 + seed)
        weights["classifier.weight"] = torch.randn(weights["classifier.weight"].shape, generator=generator)
        save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
        folders.append(folder)
    return folders


def test_refit_head_averages_the_backbones_and_fits_a_new_head(tmp_path, independent_heads, glue_hub_dir):
    recipe = MergeRecipe(
        task="mrpc",
        models=[str(f) for f in independent_heads],
        method="uniform",
        dataset=str(glue_hub_dir),
        selection_split="validation[:32]",
        report_split="validation[32:64]",
        refit_head=True,
        refit_split="train[:64]",
    )
    merge = run_merge(recipe, output_dir=tmp_path / "soup", progress=False)
    soup = load_file(tmp_path / "soup" / "model.safetensors")
    first, second = (load_file(folder / "model.safetensors") for folder in independent_heads)
    for name, tensor in soup.items():
        if tensor.is_floating_point() and not name.startswith("classifier."):
            torch.testing.assert_close(tensor, (first[name] + second[name]) / 2, atol=1e-6, rtol=0)
    averaged = (first["classifier.weight"] + second["classifier.weight"]) / 2
    assert not torch.allclose(soup["classifier.weight"], averaged, atol=1e-3)  # a new head
    result = merge.result
    assert result.refit_head["split"] == "train[:64]" and result.refit_head["rows"] == 64
    assert AVERAGED_HEAD in result.candidates and SOUP in result.candidates
    card = (tmp_path / "soup" / "README.md").read_text()
    assert "The head was refitted" in card and "64 rows of the `train[:64]` split" in card


def test_refit_head_on_a_split_that_does_not_exist_is_one_line(tmp_path, independent_heads, glue_hub_dir):
    recipe = MergeRecipe(
        task="mrpc", models=[str(f) for f in independent_heads], method="uniform", dataset=str(glue_hub_dir),
        refit_head=True, refit_split="nosuch",
    )  # fmt: skip
    with pytest.raises(DatasetError) as caught:
        run_merge(recipe, output_dir=tmp_path / "soup", progress=False)
    assert "--refit-split" in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "soup").exists()


def test_refit_head_needs_a_task_and_its_split_needs_it(independent_heads):
    models = [str(f) for f in independent_heads]
    with pytest.raises(RecipeError, match="--refit-head fits a head"):
        MergeRecipe(models=models, method="uniform", refit_head=True)
    with pytest.raises(RecipeError, match="--refit-split goes with --refit-head"):
        MergeRecipe(task="mrpc", models=models, refit_split="train")


def test_the_cli_table_shows_both_heads(capsys, tmp_path, independent_heads, glue_hub_dir):
    code, out, err = run(
        capsys, "merge", *independent_heads, "--task", "mrpc", "--dataset", glue_hub_dir, *QUICK_SPLITS,
        "--method", "uniform", "--refit-head", "--refit-split", "train[:64]", "--output-dir", tmp_path / "soup",
    )  # fmt: skip
    assert code == 0, err
    assert "uniform soup, averaged head" in out and "uniform soup, head refitted" in out
    assert "Soup minus best ingredient on report" in out and "paired bootstrap interval" in out

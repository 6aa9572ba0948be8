"""Tests of hfsoup.sweep: what can fail is checked before any training (the runs themselves: test_cli_finetune.py)."""

from __future__ import annotations

import pytest

from hfsoup.errors import HfSoupError, RecipeError
from hfsoup.finetune.sweep import run_finetune
from hfsoup.recipe.sweep import SweepRecipe


def _sweep(tmp_path, soup: dict, seeds: int = 2) -> SweepRecipe:
    finetune = {"base": str(tmp_path / "no-such-base"), "grid": {"seed": list(range(1, seeds + 1))}}
    return SweepRecipe(task="mrpc", finetune=finetune, output_dir=str(tmp_path / "runs"), soup=soup)


@pytest.mark.parametrize(
    ("soup", "seeds", "fragment"),
    [
        ({"method": "exhaustive"}, 7, "12"),  # 14 ingredients: more subsets than subset search allows
        ({"output_dir": "FILE"}, 2, "is a file"),
    ],
)
def test_a_doomed_soup_fails_before_any_training(tmp_path, soup, seeds, fragment):
    (tmp_path / "afile").write_text("x")
    soup = {key: str(tmp_path / "afile") if value == "FILE" else value for key, value in soup.items()}
    with pytest.raises(HfSoupError) as caught:
        run_finetune(_sweep(tmp_path, soup, seeds))
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "runs").exists()


def test_without_a_soup_a_missing_base_is_the_first_error(tmp_path):
    with pytest.raises(HfSoupError) as caught:
        run_finetune(_sweep(tmp_path, None))
    assert "no-such-base" in str(caught.value)


def _scored_sweep(tmp_path, tiny_sweep, glue_hub_dir, **soup) -> SweepRecipe:
    """A tiny sweep on 64 training rows whose soup, `soup`, is scored on two 32-row halves of validation."""
    return SweepRecipe(
        task="mrpc",
        dataset=str(glue_hub_dir),
        finetune=dict(tiny_sweep, train_split="train[:64]"),
        output_dir=str(tmp_path / "runs"),
        soup=dict(soup, selection_split="validation[:32]", report_split="validation[32:64]"),
    )


def test_a_model_stock_soup_of_a_sweep_is_anchored_at_the_sweep_s_start(tmp_path, tiny_sweep, glue_hub_dir):
    done = run_finetune(
        _scored_sweep(tmp_path, tiny_sweep, glue_hub_dir, method="model_stock"), progress=False
    )
    (start,) = (tmp_path / "runs").glob("init-*")
    result = done.merge.result
    assert result.method == "model_stock" and result.recipe["base"] == str(start)
    assert result.start["head_init"] == "linear_probe" and result.start["train_rows"] == 64
    assert "linear-probed head" in (tmp_path / "runs" / "soup" / "README.md").read_text()


def test_a_sweep_s_soup_can_refit_its_head_as_recipes_cola_does(tmp_path, tiny_sweep, glue_hub_dir):
    sweep = _scored_sweep(
        tmp_path, tiny_sweep, glue_hub_dir, method="uniform", refit_head=True, refit_split="train[:48]"
    )
    refit = run_finetune(sweep, progress=False).merge.result.refit_head
    assert refit["split"] == "train[:48]" and refit["rows"] == 48 and refit["projection"] == "classifier"
    card = (tmp_path / "runs" / "soup" / "README.md").read_text()
    assert "The head was refitted" in card and "48 rows of the `train[:48]` split" in card


def test_a_model_stock_soup_without_a_shared_start_needs_a_base(tmp_path):
    finetune = {"base": "b", "head_seed": None, "head_init": "random"}
    with pytest.raises(RecipeError, match="needs --base"):
        SweepRecipe(task="mrpc", finetune=finetune, soup={"method": "model_stock"})

"""Tests of hfsoup.sweep: what can fail is checked before any training (the runs themselves: test_cli_finetune.py)."""

from __future__ import annotations

import pytest

from hfsoup.errors import HfSoupError
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

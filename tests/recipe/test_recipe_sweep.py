"""Tests of hfsoup.recipe.sweep: the flat YAML of `hfsoup finetune`, its overrides, and its soup section."""

from __future__ import annotations

import pytest

from hfsoup.errors import RecipeError
from hfsoup.recipe.sweep import SweepRecipe, load_sweep

SWEEP = "task: rte\nbase: org/bert\ngrid: {seed: [1, 2, 3]}\nsoup: {method: exhaustive}\n"


def test_a_flat_yaml_becomes_a_sweep_with_overrides(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SWEEP)
    sweep = load_sweep(path, base="/local/bert", dataset="/data/glue", output_dir=None)
    assert sweep.task == "rte" and sweep.finetune.base == "/local/bert" and sweep.dataset == "/data/glue"
    assert len(sweep.finetune.points) == 3 and str(sweep.runs_dir) == "runs/rte"
    assert str(sweep.soup_dir) == "runs/rte/soup"
    soup = sweep.soup_recipe(["a/raw", "a/ema"])
    assert soup.models == ["a/raw", "a/ema"] and soup.method == "exhaustive" and not hasattr(soup, "finetune")
    assert sweep.ingredient_count == 6


def test_no_soup_section_means_no_soup():
    sweep = SweepRecipe(task="mrpc", finetune={"base": "b"})
    assert sweep.soup_dir is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("base: b\n", "needs a task"),
        ("task: mrpc\n", "'base'"),
        ("task: mrpc\nbase: b\nsoup: {models: [x]}\n", "soup.models is set by the sweep"),
        ("task: mrpc\nbase: b\nsoup: {method: greedy, seed: half}\n", "seed"),
        ("task: mrpc\nbase: b\nepochs: 0\n", "finetune.epochs"),
        ("task: mrpc\nbase: b\ningredients: [raw, epochs]\nmax_steps: 9\n", "whole number of epochs"),
        ("- task\n", "mapping"),
    ],
)
def test_wrong_fields_are_one_line_naming_the_file(tmp_path, text, fragment):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as caught:
        load_sweep(path)
    assert fragment in str(caught.value) and str(path) in str(caught.value) and "\n" not in str(caught.value)

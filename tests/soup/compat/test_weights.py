"""Tests of hfsoup.soup.compat.weights: tensor names, shapes and dtypes from headers; NaN/Inf and common bases."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from hfsoup.soup import load_ingredient, load_ingredients
from hfsoup.soup.compat import CompatReport
from hfsoup.soup.compat.weights import check_base, check_tensors, check_weights


def _edited(source: Path, folder: Path, edit) -> str:
    """A copy of the model folder `source` whose weights went through `edit(dict of tensors)`."""
    shutil.copytree(source, folder)
    weights = load_file(folder / "model.safetensors")
    edit(weights)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return str(folder)


def _report(ingredients) -> CompatReport:
    return CompatReport(ingredients=[i.name for i in ingredients])


def test_header_checks_name_missing_extra_and_reshaped_tensors(tiny_ingredient_dirs, tmp_path):
    def edit(weights):
        weights["extra.weight"] = torch.zeros(2)
        del weights["bert.pooler.dense.bias"]
        weights["classifier.bias"] = torch.zeros(3)

    other = _edited(tiny_ingredient_dirs[1], tmp_path / "other", edit)
    ingredients = load_ingredients([str(tiny_ingredient_dirs[0]), other])
    report = _report(ingredients)

    check_tensors(ingredients, report)

    first = tiny_ingredient_dirs[0].name
    assert report.errors == [
        f"tensor names differ: other lacks 1 tensor(s) {first} has (bert.pooler.dense.bias) and has 1 tensor(s) "
        f"{first} lacks (extra.weight).",
        f"1 tensor(s) differ in shape, e.g. classifier.bias: [2] ({first}) vs [3] (other).",
    ]


def test_integer_dtypes_must_match_and_float_dtypes_may_differ(tiny_ingredient_dirs, tmp_path):
    def edit(weights):
        weights["bert.embeddings.LayerNorm.weight"] = weights["bert.embeddings.LayerNorm.weight"].half()
        weights["counter"] = torch.zeros(2, dtype=torch.int32)

    base = _edited(
        tiny_ingredient_dirs[0],
        tmp_path / "base",
        lambda w: w.update(counter=torch.zeros(2, dtype=torch.int64)),
    )
    other = _edited(tiny_ingredient_dirs[1], tmp_path / "other", edit)
    ingredients = load_ingredients([base, other])
    report = _report(ingredients)

    check_tensors(ingredients, report)

    assert report.errors == [
        '1 tensor(s) differ in a non-float dtype, e.g. counter: "I64" (base) vs "I32" (other).'
    ]
    assert len(report.notes) == 1 and "bert.embeddings.LayerNorm.weight" in report.notes[0]
    assert "averaged in float32" in report.notes[0]


def test_non_finite_weights_are_found_in_shared_and_unshared_tensors(tiny_ingredient_dirs, tmp_path):
    def edit(weights):
        weights["bert.pooler.dense.weight"][0, 0] = float("nan")
        weights["only.here"] = torch.tensor([1.0, float("inf"), float("-inf")])

    broken = _edited(tiny_ingredient_dirs[1], tmp_path / "broken", edit)
    ingredients = load_ingredients([str(tiny_ingredient_dirs[0]), broken])
    report = _report(ingredients)

    check_weights(ingredients, None, report)

    assert report.weights_checked
    assert [e for e in report.errors if "non-finite" in e] == [
        "broken has non-finite weights in 2 tensor(s): bert.pooler.dense.weight (1 NaN, 0 Inf), only.here "
        "(0 NaN, 2 Inf); use a checkpoint from before training diverged."
    ]


def test_distances_to_a_base_include_the_base(tiny_base_dir, tiny_ingredient_dirs):
    ingredients = load_ingredients([str(d) for d in tiny_ingredient_dirs[:2]])
    base = load_ingredient(str(tiny_base_dir))
    report = _report(ingredients)

    check_base(ingredients, base, report)
    check_weights(ingredients, base, report)

    assert report.errors == [] and report.warnings == []
    assert any("backbones are close" in note for note in report.notes), report.notes


@pytest.mark.parametrize("far", [False, True])
def test_the_common_base_verdict(tiny_ingredient_dirs, tmp_path, far):
    def scramble(weights):
        generator = torch.Generator().manual_seed(0)
        for name, tensor in weights.items():
            if tensor.dim() >= 2:
                weights[name] = torch.randn(tensor.shape, generator=generator) * tensor.std()

    other = (
        _edited(tiny_ingredient_dirs[1], tmp_path / "other", scramble)
        if far
        else str(tiny_ingredient_dirs[1])
    )
    ingredients = load_ingredients([str(tiny_ingredient_dirs[0]), other])
    report = _report(ingredients)

    check_weights(ingredients, None, report)

    if far:
        assert (
            len(report.warnings) == 1 and "do not look fine-tuned from one common base" in report.warnings[0]
        )
    else:
        assert report.warnings == [] and any("backbones are close" in note for note in report.notes)


def _redraw_head(seed: int):
    """An edit that replaces the classifier weight by a fresh random draw, as a run that adds a new head does."""

    def edit(weights):
        generator = torch.Generator().manual_seed(seed)
        shape = weights["classifier.weight"].shape
        weights["classifier.weight"] = torch.randn(shape, generator=generator) * 0.02

    return edit


def test_independently_drawn_heads_on_one_backbone_are_flagged(tiny_ingredient_dirs, tmp_path):
    # Issue 11: one backbone, a head drawn anew in each run.
    drawn = [
        _edited(folder, tmp_path / f"drawn{index}", _redraw_head(100 + index))
        for index, folder in enumerate(tiny_ingredient_dirs[:2])
    ]
    ingredients = load_ingredients(drawn)
    report = _report(ingredients)

    check_weights(ingredients, None, report)

    assert report.independent_tensors == ["classifier.weight"]
    (warning,) = [w for w in report.warnings if "independently initialized" in w]
    assert "classifier.weight" in warning and "shared initialization" in warning and "\n" not in warning
    assert report.ok()  # a warning: whether to refuse depends on the soup method (the pipeline decides)


def test_only_head_tensors_are_checked_for_independent_draws(tiny_ingredient_dirs, tmp_path):
    # A backbone matrix drawn anew moves the backbones apart instead; it is not taken for a task head.
    def edit(weights):
        name = "bert.encoder.layer.0.intermediate.dense.weight"
        weights[name] = torch.randn(weights[name].shape, generator=torch.Generator().manual_seed(5)) * 0.02

    ingredients = load_ingredients(
        [str(tiny_ingredient_dirs[0]), _edited(tiny_ingredient_dirs[1], tmp_path / "e", edit)]
    )
    report = _report(ingredients)

    check_weights(ingredients, None, report)

    assert report.independent_tensors == []
    assert any("backbones are close" in note for note in report.notes)  # so heads were checked


def test_a_shared_head_is_not_flagged(tiny_ingredient_dirs):
    # The fixture's variants all start from the base's head and move a little: what a shared head gives.
    ingredients = load_ingredients([str(folder) for folder in tiny_ingredient_dirs])
    report = _report(ingredients)

    check_weights(ingredients, None, report)

    assert report.independent_tensors == []
    assert not any("independently initialized" in w for w in report.warnings)


def test_unrelated_models_are_not_reported_as_independent_heads(tmp_path):
    # Far-apart backbones get the common-base warning; the head check needs a close backbone to mean anything.
    from tiny_models import save_model_folder, tiny_bert, tiny_tokenizer

    folders = [
        str(
            save_model_folder(
                tiny_bert(seed=seed), tiny_tokenizer(tmp_path / f"m{seed}"), tmp_path / f"m{seed}"
            )
        )
        for seed in (21, 22)
    ]
    ingredients = load_ingredients(folders)
    report = _report(ingredients)

    check_weights(ingredients, None, report)

    assert report.independent_tensors == []
    assert any("do not look fine-tuned from one common base" in w for w in report.warnings)

"""Hub ingredients through the source seam: loaded, compared and checked from metadata before any download."""

from __future__ import annotations

import torch

from hfsoup.soup import check_compatibility, load_ingredient, load_ingredients


def test_hub_reference_plugs_in_through_the_source_seam(hub, tiny_ingredient_dirs):
    sha = hub.add_model("alice/tiny", tiny_ingredient_dirs[0])
    local = load_ingredient(str(tiny_ingredient_dirs[0]))

    ingredient = load_ingredient("alice/tiny")

    assert (ingredient.name, ingredient.reference, ingredient.revision) == ("alice/tiny", "alice/tiny", sha)
    assert ingredient.tensor_infos == local.tensor_infos
    assert ingredient.label_tensor_names == local.label_tensor_names
    assert "model.safetensors" not in hub.downloaded_files("alice/tiny")  # headers only so far
    for (name, a), (_, b) in zip(ingredient.tensors(), local.tensors(), strict=True):
        assert torch.equal(a, b), name
    assert "model.safetensors" in hub.downloaded_files("alice/tiny")
    assert load_ingredient(f"alice/tiny@{sha[:7]}").revision == sha


def test_hub_ingredients_are_checked_from_metadata_before_any_download(hub, tiny_ingredient_dirs):
    for index, folder in enumerate(tiny_ingredient_dirs[:2]):
        hub.add_model(f"alice/ft{index}", folder)
    ingredients = load_ingredients(["alice/ft0", "alice/ft1"])

    metadata_only = check_compatibility(ingredients, check_values=False)
    downloaded = {f for repo in ("alice/ft0", "alice/ft1") for f in hub.downloaded_files(repo)}
    full = check_compatibility(ingredients)

    assert metadata_only.ok() and full.ok(), full.to_text()
    assert "model.safetensors" not in downloaded
    assert "model.safetensors" in hub.downloaded_files("alice/ft0")
    assert any("backbones are close" in note for note in full.notes)


def test_one_repository_commit_under_two_spellings_is_noticed(hub, tiny_ingredient_dirs):
    sha = hub.add_model("alice/ft0", tiny_ingredient_dirs[0])
    hub.add_model("alice/ft1", tiny_ingredient_dirs[1])
    ingredients = load_ingredients(["alice/ft0", f"alice/ft0@{sha[:7]}", "alice/ft1"])

    report = check_compatibility(ingredients, check_values=False)

    assert [i.identity for i in ingredients[:2]] == [f"alice/ft0@{sha}"] * 2
    assert any(w.startswith(f"alice/ft0@{sha} is listed 2 times") for w in report.warnings), report.warnings

"""Tests of hfsoup.publish.push: the scratch folder of a push without --output-dir, and what push_soup refuses."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from hfsoup.errors import (
    HubError,
    IngredientNotFoundError,
    InvalidSettingError,
    RecipeError,
    UnsafeWeightsError,
)
from hfsoup.publish import push_soup, soup_folder


@pytest.fixture
def scratch_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_an_output_dir_is_used_as_given_and_no_push_writes_nothing(tmp_path, scratch_root):
    with soup_folder(tmp_path / "out", push=True) as folder:
        assert folder == tmp_path / "out"
    with soup_folder(None, push=False) as folder:
        assert folder is None
    assert list(scratch_root.iterdir()) == []


def test_a_scratch_folder_is_removed_unless_a_complete_soup_failed_to_push(scratch_root):
    with soup_folder(None, push=True) as folder:
        assert folder.parent.parent == scratch_root
        folder.mkdir()
    assert list(scratch_root.iterdir()) == []
    with pytest.raises(HubError), soup_folder(None, push=True) as folder:
        folder.mkdir()  # the merge failed before the soup was complete
        raise HubError("offline")
    assert list(scratch_root.iterdir()) == []
    with pytest.raises(HubError), soup_folder(None, push=True) as folder:
        folder.mkdir()
        (folder / "soup.yaml").write_text("format: hfsoup-soup/1\n")
        raise HubError("the push failed")
    assert [path.name for path in scratch_root.iterdir()] == [folder.parent.name]


def test_only_soup_folders_are_pushed(tmp_path):
    with pytest.raises(IngredientNotFoundError, match="No soup folder"):
        push_soup(tmp_path / "missing", "you/soup")
    (tmp_path / "model").mkdir()
    with pytest.raises(RecipeError, match=r"no soup\.yaml"):
        push_soup(tmp_path / "model", "you/soup")


def test_a_soup_whose_weights_changed_after_the_merge_is_not_pushed(
    capsys, tmp_path, tiny_ingredient_dirs, glue_hub_dir
):
    from cli_helpers import quick_mrpc, run
    from safetensors.torch import load_file, save_file

    soup = tmp_path / "soup"
    code, _, err = run(
        capsys, "merge", *quick_mrpc(tiny_ingredient_dirs[:2], glue_hub_dir), "--output-dir", soup
    )
    assert code == 0, err
    weights = load_file(soup / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 1.0
    save_file(weights, soup / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(InvalidSettingError, match="changed after hfsoup merge wrote its card"):
        push_soup(soup, "you/soup")


def test_a_link_to_a_file_outside_the_folder_is_never_pushed(tmp_path, tiny_ingredient_dirs):
    from hfsoup.sources import push_folder

    folder = tmp_path / "model"
    shutil.copytree(tiny_ingredient_dirs[0], folder)
    secret = tmp_path / "token.txt"
    secret.write_text("hf_secret")
    (folder / "notes.txt").symlink_to(secret)
    with pytest.raises(UnsafeWeightsError) as caught:
        push_folder(folder, "you/model")  # refused before any network call
    assert "notes.txt" in str(caught.value) and "hf_secret" not in str(caught.value)

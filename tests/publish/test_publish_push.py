"""Tests of hfsoup.publish.push: the scratch folder of a push without --output-dir, and what push_soup refuses."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from hfsoup.errors import HubError, IngredientNotFoundError, RecipeError
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

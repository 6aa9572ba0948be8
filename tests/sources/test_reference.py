"""Tests of hfsoup.sources.reference: what a model reference names, with no network."""

from __future__ import annotations

import pytest

from hfsoup.errors import IngredientNotFoundError, InvalidSettingError
from hfsoup.sources import is_repo_reference, package_folder, parse_reference
from hfsoup.sources.reference import is_path_like

# ---------------------------------------------------------------- Hub references (moved from test_hub.py)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alice/tiny", ("alice/tiny", None)),
        ("alice/tiny@main", ("alice/tiny", "main")),
        ("alice/tiny@refs/pr/1", ("alice/tiny", "refs/pr/1")),
        ("alice/tiny@0123abc", ("alice/tiny", "0123abc")),
    ],
)
def test_parse_reference(text, expected):
    assert parse_reference(text) == expected
    assert is_repo_reference(text)


@pytest.mark.parametrize("text", ["tiny", "a/b/c", "alice/tiny@", "alice/ti ny", "alice/--x", ""])
def test_invalid_references_are_not_repo_references(text):
    assert not is_repo_reference(text)


def test_existing_local_folder_is_not_a_repo_reference(tmp_path, monkeypatch):
    (tmp_path / "alice" / "tiny").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert not is_repo_reference("alice/tiny")
    assert is_repo_reference("alice/other")


@pytest.mark.parametrize("text", ["alice/tiny@", "tiny", "alice/ti ny"])
def test_parse_reference_refuses_invalid_references_in_one_line(text):
    with pytest.raises(InvalidSettingError, match="is not a Hub reference: write user/name") as caught:
        parse_reference(text)
    assert "\n" not in str(caught.value) and repr(text) in str(caught.value)


@pytest.mark.parametrize(
    ("reference", "path_like"),
    [("/abs/model", True), ("./model", True), ("../model", True), ("~/model", True), ("runs/seed1", False)],
)
def test_only_absolute_dot_and_home_paths_are_path_like(reference, path_like):
    assert is_path_like(reference) is path_like
    assert is_repo_reference(reference) is (not path_like)


# ---------------------------------------------------------------- folders inside packages


def test_package_folder_finds_a_model_folder_inside_an_installed_package(tmp_path, monkeypatch):
    package = tmp_path / "hfsoup_test_models"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "model" / "config.json").write_text("{}")
    monkeypatch.syspath_prepend(str(tmp_path))

    assert package_folder("package:hfsoup_test_models/model") == package / "model"
    with pytest.raises(IngredientNotFoundError, match=r"holds no model \(no config.json\)"):
        package_folder("package:hfsoup_test_models/missing")


@pytest.mark.parametrize("reference", ["package:hfsoup_no_such_package/model", "package:not-an-identifier/x"])
def test_package_folder_of_a_missing_package_says_how_to_install_it(reference):
    with pytest.raises(IngredientNotFoundError, match="is not installed; install it") as caught:
        package_folder(reference)
    assert "\n" not in str(caught.value) and caught.value.reference == reference

"""Tests of hfsoup.sources.source: which source a reference opens, and what a reference naming nothing reports."""

from __future__ import annotations

from pathlib import Path

import pytest
from hub_server import HubServer
from huggingface_hub import constants

from hfsoup.errors import HubAuthError, HubError, HubUnreachableError, IngredientNotFoundError
from hfsoup.sources import LocalSource, model_folder, open_source
from hfsoup.sources.hub import HubSource


def one_line(caught: pytest.ExceptionInfo) -> str:
    message = str(caught.value)
    assert "\n" not in message and message == message.strip()
    return message


def test_a_missing_relative_folder_says_it_is_no_folder_here_and_what_the_hub_said_offline(
    tmp_path, monkeypatch
):
    # `runs/seed1` also reads as the Hub id user/name; it used to be reported as an offline Hub problem only.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)

    with pytest.raises(HubUnreachableError) as caught:
        open_source("runs/seed1")

    message = one_line(caught)
    assert message.startswith(f"runs/seed1 is not a folder here ({tmp_path}), and as a Hub repository: ")
    assert "HF_HUB_OFFLINE is set and runs/seed1 needs the Hub" in message
    assert caught.value.repo_id == "runs/seed1"


def test_a_missing_relative_folder_says_what_the_online_hub_said(hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    with pytest.raises(HubAuthError) as caught:
        open_source("runs/seed1")

    message = one_line(caught)
    assert message.startswith(f"runs/seed1 is not a folder here ({tmp_path}), and as a Hub repository: ")
    assert f"runs/seed1 was not found on {hub.url}" in message


def test_a_reference_with_a_revision_can_only_be_a_repository(hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    with pytest.raises(HubError) as caught:
        open_source("runs/seed1@main")
    assert "not a folder here" not in one_line(caught)


@pytest.mark.parametrize("reference", ["./runs/seed1", "../runs/seed1", "~/no-such-hfsoup-folder"])
def test_a_path_like_reference_never_asks_the_hub(hub, tmp_path, monkeypatch, reference):
    monkeypatch.chdir(tmp_path)

    with pytest.raises(IngredientNotFoundError, match="No model folder at") as caught:
        open_source(reference)
    one_line(caught)
    assert hub.requests == []


def test_an_existing_folder_wins_over_a_repository_of_the_same_name(
    hub, tiny_ingredient_dirs, tmp_path, monkeypatch
):
    hub.add_model("alice/tiny", tiny_ingredient_dirs[1])
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "tiny").symlink_to(tiny_ingredient_dirs[0])
    monkeypatch.chdir(tmp_path)

    source = open_source("alice/tiny")

    assert isinstance(source, LocalSource) and source.reference == "alice/tiny"
    assert hub.requests == []


def test_a_name_that_is_neither_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    with pytest.raises(
        IngredientNotFoundError, match="is neither a local model folder nor a Hub repository id"
    ):
        open_source("no-slash-here")


def test_model_folder_of_a_hub_repository_has_no_pickle_or_code(hub, tiny_ingredient_dirs):
    hub.add_model(
        "alice/tiny",
        tiny_ingredient_dirs[0],
        extra_files={"pytorch_model.bin": b"pickle", "modeling_x.py": b"print('code')"},
    )

    folder = model_folder("alice/tiny", token=HubServer.ALICE)

    names = {p.name for p in Path(folder).iterdir()}
    assert "model.safetensors" in names and "config.json" in names
    assert not names & {"pytorch_model.bin", "modeling_x.py"}
    assert model_folder(str(tiny_ingredient_dirs[0])) == tiny_ingredient_dirs[0]
    assert isinstance(open_source("alice/tiny"), HubSource)

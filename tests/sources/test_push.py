"""Tests of hfsoup.sources.push against the Hub-compatible test server: local checks first, then one commit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hub_server import HubServer, read_folder
from huggingface_hub import HfApi, ModelCard
from transformers import BertForSequenceClassification

from hfsoup.errors import HubAuthError, IngredientNotFoundError, InvalidSettingError, UnsafeWeightsError
from hfsoup.sources import push_folder
from hfsoup.sources.hub import HubSource

INDEX = "model.safetensors.index.json"


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and message.strip() == message
    return message


# ---------------------------------------------------------------- one commit (moved from test_hub.py)


def test_push_folder_in_one_commit(hub, tiny_ingredient_dirs, tmp_path):
    folder = tmp_path / "soup"
    folder.mkdir()
    for name, data in read_folder(tiny_ingredient_dirs[0]).items():
        (folder / name).write_bytes(data)
    (folder / "README.md").write_text("---\nlicense: mit\ntags:\n- model-soup\n---\n# My soup\n")
    (folder / "soup.yaml").write_text("method: greedy\n")

    url = push_folder(folder, "alice/soup", token=HubServer.ALICE, commit_message="Add soup")

    commits = HfApi().list_repo_commits("alice/soup")
    assert [c.title for c in commits] == ["Add soup", "initial commit"]
    assert url == f"{hub.url}/alice/soup/commit/{commits[0].commit_id}"
    assert url.oid == commits[0].commit_id
    assert len([r for r in hub.requests if r.method == "POST" and r.path.endswith("/commit/main")]) == 1
    assert set(hub.repos["alice/soup"].commits[url.oid].files) == {".gitattributes", *read_folder(folder)}
    card = ModelCard.load("alice/soup")
    assert card.data.tags == ["model-soup"]
    assert "# My soup" in card.text


def test_push_to_a_new_branch_of_a_private_repo(hub, tiny_ingredient_dirs):
    url = push_folder(
        tiny_ingredient_dirs[0], "alice/soup", token=HubServer.ALICE, private=True, revision="v2"
    )

    repo = hub.repos["alice/soup"]
    assert repo.private
    assert repo.branches["v2"] == url.oid
    assert "model.safetensors" not in repo.resolve("main").files
    assert HubSource("alice/soup", "v2", token=HubServer.ALICE).revision == url.oid
    # Pushing again to the existing repo and branch adds one commit on top.
    again = push_folder(tiny_ingredient_dirs[1], "alice/soup", token=HubServer.ALICE, revision="v2")
    assert repo.commits[again.oid].parent == url.oid


def test_push_without_token_or_rights(hub, tiny_ingredient_dirs):
    with pytest.raises(HubAuthError, match="needs a Hugging Face token") as err:
        push_folder(tiny_ingredient_dirs[0], "alice/soup")
    one_line(err)
    with pytest.raises(HubAuthError, match="not allowed") as err:
        push_folder(tiny_ingredient_dirs[0], "alice/soup", token=HubServer.BOB)
    one_line(err)
    assert "alice/soup" not in hub.repos


# ---------------------------------------------------------------- nothing is created for a bad folder


def _pickled(tiny_folder: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_folder, folder)
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 pickle bytes")
    return folder


def _without_weights(tiny_folder: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "no-weights"
    shutil.copytree(tiny_folder, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    return folder


@pytest.mark.parametrize(
    ("make", "error", "fragment"),
    [
        (lambda tiny, tmp: tmp / "does-not-exist", IngredientNotFoundError, "No model folder at"),
        (_without_weights, IngredientNotFoundError, "has no weights"),
        (_pickled, UnsafeWeightsError, "holds pickle files (pytorch_model.bin)"),
    ],
    ids=["missing folder", "no weights", "pickle"],
)
def test_a_bad_folder_creates_nothing_on_the_hub(hub, tiny_ingredient_dirs, tmp_path, make, error, fragment):
    # The old push created the (empty) repository before it looked at the folder.
    folder = make(tiny_ingredient_dirs[0], tmp_path)

    with pytest.raises(error) as caught:
        push_folder(folder, "alice/x", token=HubServer.ALICE)

    assert fragment in one_line(caught)
    assert "alice/x" not in hub.repos
    assert not [r for r in hub.requests if r.method == "POST" and r.path == "/api/repos/create"]
    assert hub.requests == []


def test_a_repository_id_with_a_revision_is_refused_before_anything(hub, tiny_ingredient_dirs):
    with pytest.raises(InvalidSettingError, match="with --revision v2, not 'alice/x@v2'"):
        push_folder(tiny_ingredient_dirs[0], "alice/x@v2", token=HubServer.ALICE)
    assert hub.requests == []


# ---------------------------------------------------------------- what the commit holds


def test_a_second_push_leaves_no_stale_weight_files(hub, tiny_ingredient_dirs, tmp_path):
    sharded = tmp_path / "sharded"
    shutil.copytree(tiny_ingredient_dirs[0], sharded, ignore=shutil.ignore_patterns("*.safetensors"))
    BertForSequenceClassification.from_pretrained(tiny_ingredient_dirs[0]).save_pretrained(
        sharded, max_shard_size="50KB"
    )
    shards = sorted(p.name for p in sharded.glob("model-*.safetensors"))
    assert len(shards) > 1 and (sharded / INDEX).is_file()
    (sharded / "notes.txt").write_text("not a weight file: it stays")
    first = push_folder(sharded, "alice/soup", token=HubServer.ALICE)
    repo = hub.repos["alice/soup"]
    assert set(shards) | {INDEX} <= set(repo.commits[first.oid].files)

    second = push_folder(tiny_ingredient_dirs[1], "alice/soup", token=HubServer.ALICE)

    files = repo.commits[second.oid].files
    assert not [name for name in files if name.startswith("model-") or name == INDEX]
    assert files["model.safetensors"] == (tiny_ingredient_dirs[1] / "model.safetensors").read_bytes()
    assert "notes.txt" in files  # only weight files are deleted
    assert repo.commits[second.oid].parent == first.oid  # the deletions travel in the push's one commit
    source = HubSource("alice/soup")
    assert [f.name for f in source.weight_files()] == ["model.safetensors"]


def test_code_and_hidden_files_are_not_uploaded(hub, tiny_ingredient_dirs, tmp_path):
    folder = tmp_path / "soup"
    shutil.copytree(tiny_ingredient_dirs[0], folder)
    (folder / "modeling_custom.py").write_text("print('remote code')")
    (folder / "sub").mkdir()
    (folder / "sub" / "helper.py").write_text("print('more code')")
    (folder / ".env").write_text("SECRET=1")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "state").write_text("local state")

    commit = push_folder(folder, "alice/soup", token=HubServer.ALICE)

    files = set(hub.repos["alice/soup"].commits[commit.oid].files)
    assert files == {".gitattributes", *read_folder(tiny_ingredient_dirs[0])}

"""hfsoup.sources.hub against the Hub-compatible test server, through the real huggingface_hub client over HTTP.

Pushing is tested in test_push.py.
"""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path

import pytest
import torch
from hub_server import HubServer, point_client_at, read_folder
from huggingface_hub import constants
from transformers import BertForSequenceClassification

from hfsoup.errors import (
    HubAuthError,
    HubUnreachableError,
    IngredientNotFoundError,
    RepoNotFoundError,
    RevisionNotFoundError,
    UnsafeWeightsError,
)
from hfsoup.soup import load_ingredient
from hfsoup.sources import push_folder, read_tensor_infos
from hfsoup.sources.hub import HubSource

EXTRAS = {
    "README.md": b"---\nlicense: mit\n---\n# A tiny BERT\n",
    "pytorch_model.bin": b"not a pickle, and never fetched",
    "onnx/model.onnx": b"onnx bytes",
    "onnx/model.safetensors": b"a safetensors file outside the root",
    "train.py": b"print('remote code')",
}
# The model card travels too: its metadata (license, base_model) goes into the soup's card.
METADATA = {"config.json", "README.md", "tokenizer.json", "tokenizer_config.json"}


@pytest.fixture
def tiny_repo(hub, tiny_ingredient_dirs) -> str:
    """`alice/tiny`: a tiny BERT folder plus files hfsoup must never fetch; returns the sha of main."""
    return hub.add_model("alice/tiny", tiny_ingredient_dirs[0], extra_files=EXTRAS)


def cached_files(home: Path) -> set[str]:
    """Names of the files in the snapshots of the Hugging Face cache."""
    return {p.name for p in (home / "hub").rglob("snapshots/*/**/*") if p.is_file()}


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and message.strip() == message
    return message


# ---------------------------------------------------------------- pulling


def test_pull_records_the_resolved_sha_and_downloads_only_safetensors(hub, tiny_repo, isolated_hf_home):
    source = HubSource("alice/tiny")
    assert source.revision == tiny_repo
    assert source.reference == "alice/tiny"

    files = source.weight_files()
    assert [f.name for f in files] == ["model.safetensors"]
    assert files[0].read_bytes() == hub.repos["alice/tiny"].commits[tiny_repo].files["model.safetensors"]
    assert (source.metadata_dir() / "config.json").is_file()

    # Only config, card, tokenizer and weights travelled; no pickle, onnx or code file.
    assert hub.downloaded_files("alice/tiny") == METADATA | {"model.safetensors"}
    assert cached_files(isolated_hf_home) == METADATA | {"model.safetensors"}


@pytest.mark.parametrize("kind", ["branch", "tag", "sha", "short sha"])
def test_pull_by_revision(hub, tiny_ingredient_dirs, kind):
    first = hub.add_model("alice/tiny", tiny_ingredient_dirs[0])
    hub.add_model("alice/tiny", tiny_ingredient_dirs[1])  # main moves on
    hub.create_branch("alice/tiny", "dev", first)
    hub.create_tag("alice/tiny", "v1", first)
    revision = {"branch": "dev", "tag": "v1", "sha": first, "short sha": first[:7]}[kind]

    source = HubSource("alice/tiny", revision)

    assert source.revision == first
    assert source.reference == f"alice/tiny@{revision}"
    weights = source.weight_files()[0].read_bytes()
    assert weights == (tiny_ingredient_dirs[0] / "model.safetensors").read_bytes()
    assert weights != (tiny_ingredient_dirs[1] / "model.safetensors").read_bytes()


def test_metadata_only_downloads_no_weights(hub, tiny_repo, tiny_ingredient_dirs, isolated_hf_home):
    source = HubSource("alice/tiny")

    infos = source.tensor_infos()
    folder = source.metadata_dir()

    assert infos == read_tensor_infos(tiny_ingredient_dirs[0] / "model.safetensors")
    assert infos["classifier.weight"].shape == (2, 32)
    assert {p.name for p in folder.iterdir()} == METADATA
    # The weights were only asked for their header, with a range request from byte 0.
    weight_gets = [r for r in hub.file_requests("alice/tiny") if r.path.endswith("/model.safetensors")]
    assert weight_gets and all(r.range == "bytes=0-100000" for r in weight_gets)
    assert hub.downloaded_files("alice/tiny") == METADATA
    assert cached_files(isolated_hf_home) == METADATA


def test_sharded_weights(hub, tiny_base_dir, tmp_path):
    from transformers import BertForSequenceClassification

    sharded = tmp_path / "sharded"
    BertForSequenceClassification.from_pretrained(tiny_base_dir).save_pretrained(
        sharded, max_shard_size="40KB"
    )
    shards = sorted(p.name for p in sharded.glob("*.safetensors"))
    assert len(shards) > 1
    hub.add_model("alice/sharded", sharded)

    source = HubSource("alice/sharded")
    infos = source.tensor_infos()
    files = source.weight_files()

    assert [f.name for f in files] == shards
    assert infos == read_tensor_infos(tiny_base_dir / "model.safetensors")
    assert hub.downloaded_files("alice/sharded") == {"config.json", "model.safetensors.index.json", *shards}


def _sharded_files(model_folder: Path, tmp_path: Path) -> dict[str, bytes]:
    """The shards and index of `model_folder`'s weights, saved in several files."""
    sharded = tmp_path / f"sharded-{model_folder.name}"
    BertForSequenceClassification.from_pretrained(model_folder).save_pretrained(
        sharded, max_shard_size="50KB"
    )
    files = {p.name: p.read_bytes() for p in sharded.glob("model*.safetensors*")}
    assert len(files) > 2 and INDEX in files
    return files


INDEX = "model.safetensors.index.json"


def test_single_file_is_read_when_an_index_is_there_too(hub, tiny_ingredient_dirs, tmp_path):
    # As `from_pretrained`: model.safetensors first; the old rule read the shards of the index.
    shards = _sharded_files(tiny_ingredient_dirs[1], tmp_path)
    hub.add_model("alice/both", tiny_ingredient_dirs[0], extra_files=shards)

    source = HubSource("alice/both")
    infos = source.tensor_infos()
    files = source.weight_files()

    assert [f.name for f in files] == ["model.safetensors"]
    assert files[0].read_bytes() == (tiny_ingredient_dirs[0] / "model.safetensors").read_bytes()
    assert infos == read_tensor_infos(tiny_ingredient_dirs[0] / "model.safetensors")
    assert not {name for name in hub.downloaded_files("alice/both") if name.startswith("model-")}


def test_explicit_transformers_weights_in_config_wins(hub, tiny_ingredient_dirs, tmp_path):
    shards = _sharded_files(tiny_ingredient_dirs[1], tmp_path)
    config = json.loads((tiny_ingredient_dirs[0] / "config.json").read_text())
    config["transformers_weights"] = INDEX
    hub.add_model(
        "alice/explicit",
        tiny_ingredient_dirs[0],
        extra_files={**shards, "config.json": json.dumps(config).encode()},
    )

    files = HubSource("alice/explicit").weight_files()

    assert sorted(f.name for f in files) == sorted(name for name in shards if name != INDEX)
    assert "model.safetensors" not in hub.downloaded_files("alice/explicit")
    loaded = BertForSequenceClassification.from_pretrained(files[0].parent).state_dict()
    expected = BertForSequenceClassification.from_pretrained(tiny_ingredient_dirs[1]).state_dict()
    assert all(torch.equal(loaded[name], tensor) for name, tensor in expected.items())


@pytest.mark.parametrize("entry", ["../other/model.safetensors", "/abs/model.safetensors"])
def test_index_entries_outside_the_repository_are_refused(hub, tiny_base_dir, entry):
    files = {k: v for k, v in read_folder(tiny_base_dir).items() if k != "model.safetensors"}
    index = {"weight_map": {"classifier.bias": entry}}
    hub.create_repo("alice/escape")
    hub.commit("alice/escape", {**files, INDEX: json.dumps(index).encode()})
    source = HubSource("alice/escape")

    with pytest.raises(UnsafeWeightsError, match="outside the model folder") as err:
        source.tensor_infos()
    assert one_line(err).startswith(f"alice/escape/{INDEX} names the weight file {entry!r}")
    with pytest.raises(UnsafeWeightsError):
        source.weight_files()


def _repo_with(
    hub, tiny_base_dir, repo_id: str, changed: dict[str, bytes], drop: tuple[str, ...] = ()
) -> None:
    files = {k: v for k, v in read_folder(tiny_base_dir).items() if k not in drop}
    hub.create_repo(repo_id)
    hub.commit(repo_id, {**files, **changed})


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        (b"junk", "too small"),
        (struct.pack("<Q", 5) + b"{abc}", "not JSON"),
        (struct.pack("<Q", 7) + b"[1,2,3]", "a list"),
        (struct.pack("<Q", 8) + b'{"w": 5}', "a tensor that is a number"),
    ],
)
def test_invalid_remote_headers_are_one_line_errors_naming_the_file(hub, tiny_base_dir, header, kind):
    _repo_with(hub, tiny_base_dir, "alice/corrupt", {"model.safetensors": header})
    ingredient = load_ingredient("alice/corrupt")

    with pytest.raises(UnsafeWeightsError) as err:
        ingredient.tensor_infos  # noqa: B018
    assert one_line(err).startswith("alice/corrupt/model.safetensors is not a valid safetensors file (")
    assert "model.safetensors" not in hub.downloaded_files("alice/corrupt")


def test_a_truncated_remote_file_is_refused_once_downloaded(hub, tiny_base_dir):
    data = (tiny_base_dir / "model.safetensors").read_bytes()
    _repo_with(hub, tiny_base_dir, "alice/truncated", {"model.safetensors": data[:-100]})
    ingredient = load_ingredient("alice/truncated")
    assert ingredient.tensor_infos  # the header alone, read over HTTP, cannot tell

    with pytest.raises(UnsafeWeightsError, match="file not fully covered") as err:
        list(ingredient.tensors())
    assert "is not a valid safetensors file" in one_line(err)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b'{"weight_map": {', "is not valid JSON (JSONDecodeError"),
        (b"\xff\xfe\x00\x01", "is not valid JSON (UnicodeDecodeError"),
        (b'["model-00001-of-00002.safetensors"]', "holds an array, not a JSON object"),
        (b'{"weight_map": ["model-00001-of-00002.safetensors"]}', "has no 'weight_map' object"),
    ],
)
def test_a_corrupt_remote_index_is_a_one_line_error_naming_it(hub, tiny_base_dir, content, fragment):
    _repo_with(hub, tiny_base_dir, "alice/index", {INDEX: content}, drop=("model.safetensors",))
    ingredient = load_ingredient("alice/index")

    with pytest.raises(UnsafeWeightsError) as err:
        ingredient.tensor_infos  # noqa: B018
    assert one_line(err).startswith(f"alice/index/{INDEX} ") and fragment in one_line(err)


@pytest.mark.parametrize(
    ("content", "fragment"), [(b'{"model_type": "bert",', "is not valid JSON"), (b"[1]", "holds an array")]
)
def test_a_remote_config_that_is_not_a_json_object_is_a_one_line_error(hub, tiny_base_dir, content, fragment):
    _repo_with(hub, tiny_base_dir, "alice/config", {"config.json": content})

    with pytest.raises(UnsafeWeightsError) as err:
        load_ingredient("alice/config")
    assert one_line(err).startswith("alice/config/config.json ") and fragment in one_line(err)


def test_pickle_only_repo_is_refused(hub, tiny_base_dir):
    files = {k: v for k, v in read_folder(tiny_base_dir).items() if k != "model.safetensors"}
    hub.create_repo("alice/pickled")
    hub.commit("alice/pickled", {**files, "pytorch_model.bin": b"\x80\x04 pickle bytes"})
    source = HubSource("alice/pickled")

    with pytest.raises(UnsafeWeightsError, match=r"only pickle weights \(pytorch_model.bin\)") as err:
        source.tensor_infos()
    one_line(err)
    with pytest.raises(UnsafeWeightsError):
        source.weight_files()
    assert "pytorch_model.bin" not in hub.downloaded_files("alice/pickled")


def test_repo_without_config_or_weights(hub, tiny_base_dir):
    files = read_folder(tiny_base_dir)
    hub.create_repo("alice/no-config")
    hub.commit("alice/no-config", {k: v for k, v in files.items() if k != "config.json"})
    hub.create_repo("alice/no-weights")
    hub.commit("alice/no-weights", {k: v for k, v in files.items() if k != "model.safetensors"})

    with pytest.raises(IngredientNotFoundError, match=r"alice/no-config has no config\.json") as err:
        HubSource("alice/no-config").metadata_dir()
    one_line(err)
    with pytest.raises(IngredientNotFoundError, match="alice/no-weights has no weights") as err:
        HubSource("alice/no-weights").tensor_infos()
    one_line(err)


def test_cached_pull_works_offline_without_requests(hub, tiny_repo, monkeypatch):
    online = HubSource("alice/tiny")
    online.weight_files()
    hub.requests.clear()

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    offline = HubSource("alice/tiny")

    assert offline.revision == online.revision
    assert offline.tensor_infos() == online.tensor_infos()
    assert offline.weight_files() == online.weight_files()
    assert (offline.metadata_dir() / "config.json").is_file()
    assert hub.requests == []


def test_second_pull_is_served_from_the_cache(hub, tiny_repo):
    HubSource("alice/tiny").weight_files()
    hub.requests.clear()

    again = HubSource("alice/tiny")
    again.metadata_dir()
    again.weight_files()

    assert [r.path for r in hub.requests] == ["/api/models/alice/tiny"]  # the resolution of main


def test_interrupted_download_resumes_where_it_stopped(hub, tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3_000_000)}, tmp_path / "model.safetensors")  # 12 MB: more than one chunk
    (tmp_path / "config.json").write_text("{}")
    hub.add_model("alice/big", tmp_path)
    hub.interrupt("alice/big", "model.safetensors", after_bytes=11_000_000)

    files = HubSource("alice/big").weight_files()

    assert files[0].read_bytes() == (tmp_path / "model.safetensors").read_bytes()
    weight_gets = [r for r in hub.file_requests("alice/big") if r.path.endswith("/model.safetensors")]
    # huggingface_hub keeps what it received in whole 10 MiB chunks and asks only for the rest.
    assert [r.range for r in weight_gets] == [None, f"bytes={constants.DOWNLOAD_CHUNK_SIZE}-"]


# ---------------------------------------------------------------- errors


def test_missing_repo(hub):
    with pytest.raises(RepoNotFoundError, match="alice/nothing was not found") as err:
        HubSource("alice/nothing", token=HubServer.ALICE)
    one_line(err)


def test_private_repo_without_token(hub, tiny_ingredient_dirs):
    hub.add_model("alice/secret", tiny_ingredient_dirs[0], private=True)
    with pytest.raises(HubAuthError, match="private and no token was sent") as err:
        HubSource("alice/secret")
    one_line(err)
    assert HubSource("alice/secret", token=HubServer.ALICE).tensor_infos()


def test_private_repo_of_someone_else(hub, tiny_ingredient_dirs):
    hub.add_model("alice/secret", tiny_ingredient_dirs[0], private=True)
    with pytest.raises(RepoNotFoundError, match="your token cannot see it"):
        HubSource("alice/secret", token=HubServer.BOB)


def test_rejected_token(hub, tiny_repo):
    with pytest.raises(HubAuthError, match="rejected the token") as err:
        HubSource("alice/tiny", token="hf_wrong")
    one_line(err)


def test_gated_repo_without_access(hub, tiny_ingredient_dirs):
    hub.add_model("alice/gated", tiny_ingredient_dirs[0], gated=True)
    source = HubSource("alice/gated", token=HubServer.BOB)  # resolving a gated repo is allowed
    with pytest.raises(HubAuthError, match="alice/gated is gated: accept its conditions") as err:
        source.metadata_dir()
    one_line(err)
    hub.repos["alice/gated"].granted.add("bob")
    assert (source.metadata_dir() / "config.json").is_file()


def test_missing_revision(hub, tiny_repo):
    with pytest.raises(RevisionNotFoundError, match="alice/tiny@nope: no such revision") as err:
        HubSource("alice/tiny", "nope")
    one_line(err)


def test_missing_full_sha(hub, tiny_repo):
    source = HubSource("alice/tiny", "f" * 40)  # a full sha resolves without asking the Hub
    with pytest.raises(RevisionNotFoundError):
        source.metadata_dir()


def test_hub_unreachable(isolated_hf_home, monkeypatch, tiny_ingredient_dirs):
    with socket.socket() as sock:  # a port on which nothing listens
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    point_client_at(url, monkeypatch, isolated_hf_home)

    with pytest.raises(HubUnreachableError, match=f"cannot reach the Hub at {url}") as err:
        HubSource("alice/tiny")
    one_line(err)
    with pytest.raises(HubUnreachableError, match=url):
        push_folder(tiny_ingredient_dirs[0], "alice/soup", token=HubServer.ALICE)


def test_offline_with_empty_cache(hub, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubUnreachableError, match="HF_HUB_OFFLINE is set and alice/tiny needs the Hub"):
        HubSource("alice/tiny")
    assert hub.requests == []

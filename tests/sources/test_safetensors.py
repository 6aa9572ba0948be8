"""Tests of hfsoup.sources.safetensors: which weight files are read (transformers' order), path safety, headers."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from hfsoup.errors import IngredientNotFoundError, UnsafeWeightsError
from hfsoup.sources.safetensors import TensorInfo, read_json_object, read_tensor_infos, select_weight_files

INDEX = "model.safetensors.index.json"
SHARDS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]


def select(files: dict[str, object], explicit: str | None = None) -> list[str]:
    """`select_weight_files` over an imaginary model: relative path -> JSON content (or anything for weights)."""
    return select_weight_files(
        "m",
        files.__contains__,
        [name for name in files if "/" not in name],
        lambda name: files[name],
        explicit,
    )


def index_of(*shards: str) -> dict:
    return {"metadata": {}, "weight_map": {f"tensor{i}": shard for i, shard in enumerate(shards)}}


def one_line(caught: pytest.ExceptionInfo) -> str:
    message = str(caught.value)
    assert "\n" not in message and message == message.strip()
    return message


# ---------------------------------------------------------------- transformers' order


def test_the_single_file_wins_over_an_index_as_in_from_pretrained():
    # The old rule read the shards of the index whenever there was one.
    files = {"model.safetensors": b"", INDEX: index_of(*SHARDS), **dict.fromkeys(SHARDS, b"")}

    assert select(files) == ["model.safetensors"]


def test_the_index_is_read_when_there_is_no_single_file():
    files = {INDEX: index_of(SHARDS[1], SHARDS[0], SHARDS[1]), **dict.fromkeys(SHARDS, b"")}

    assert select(files) == SHARDS


@pytest.mark.parametrize(
    ("explicit", "expected"),
    [
        ("other.safetensors", ["other.safetensors"]),
        ("sub/other.safetensors", ["sub/other.safetensors"]),
        ("other.safetensors.index.json", SHARDS),
    ],
)
def test_explicit_transformers_weights_wins_over_the_usual_files(explicit, expected):
    files = {
        "model.safetensors": b"",
        "other.safetensors": b"",
        "sub/other.safetensors": b"",
        "other.safetensors.index.json": index_of(*SHARDS),
        **dict.fromkeys(SHARDS, b""),
    }

    assert select(files, explicit) == expected


def test_shards_of_an_index_in_a_subfolder_are_relative_to_the_top_folder():
    # transformers joins shard names to the model folder, wherever the index named by config.json is.
    files = {"sub/x.safetensors.index.json": index_of("model-1.safetensors"), "model-1.safetensors": b""}

    assert select(files, "sub/x.safetensors.index.json") == ["model-1.safetensors"]


@pytest.mark.parametrize("explicit", ["missing.safetensors", "model.bin", "config.json"])
def test_explicit_weights_that_are_missing_or_not_safetensors_are_refused(explicit):
    files = {"model.safetensors": b"", "model.bin": b"", "config.json": {}}

    with pytest.raises(IngredientNotFoundError, match=r"m/config.json names the weights") as caught:
        select(files, explicit)
    assert repr(explicit) in one_line(caught)


# ---------------------------------------------------------------- paths that leave the folder


@pytest.mark.parametrize(
    "entry",
    ["../other/model.safetensors", "/abs/model.safetensors", "sub/../../x.safetensors", "C:/x.safetensors"],
)
def test_index_entries_outside_the_folder_are_refused_by_name(entry):
    files = {INDEX: index_of(SHARDS[0], entry), SHARDS[0]: b""}

    with pytest.raises(UnsafeWeightsError, match="outside the model folder") as caught:
        select(files)
    message = one_line(caught)
    assert f"m/{INDEX}" in message and repr(entry) in message


@pytest.mark.parametrize(
    "explicit", ["../model.safetensors", "/tmp/model.safetensors", "../x.safetensors.index.json"]
)
def test_explicit_weights_outside_the_folder_are_refused(explicit):
    with pytest.raises(UnsafeWeightsError, match=r"transformers_weights\) names the weight file") as caught:
        select({"model.safetensors": b""}, explicit)
    assert repr(explicit) in one_line(caught)


# ---------------------------------------------------------------- broken indexes


@pytest.mark.parametrize(
    ("index", "fragment"),
    [
        ({"weight_map": ["model-00001-of-00002.safetensors"]}, "has no 'weight_map' object"),
        ({"metadata": {}}, "has no 'weight_map' object"),
        ({"weight_map": {"a": 3}}, "has no 'weight_map' object"),
        ({"weight_map": {}}, "lists no weight files"),
        ({"weight_map": {"a": "model.bin"}}, "not safetensors (model.bin)"),
        (index_of(*SHARDS), "lists 2 missing shard(s)"),
    ],
)
def test_broken_indexes_are_one_line_errors_naming_the_index(index, fragment):
    with pytest.raises((UnsafeWeightsError, IngredientNotFoundError)) as caught:
        select({INDEX: index})
    message = one_line(caught)
    assert message.startswith(f"m/{INDEX} ") and fragment in message


def test_pickle_only_and_empty_models():
    with pytest.raises(UnsafeWeightsError, match=r"only pickle weights \(pytorch_model.bin\)"):
        select({"pytorch_model.bin": b"", "config.json": {}})
    with pytest.raises(IngredientNotFoundError, match="m has no weights"):
        select({"config.json": {}})


# ---------------------------------------------------------------- headers and JSON files


@pytest.fixture
def good_file(tmp_path) -> Path:
    path = tmp_path / "good.safetensors"
    save_file({"w": torch.ones(4, 4), "b": torch.zeros(4, dtype=torch.int64)}, path)
    return path


def test_header_infos(good_file):
    assert read_tensor_infos(good_file) == {"w": TensorInfo("F32", (4, 4)), "b": TensorInfo("I64", (4,))}
    assert TensorInfo("BF16", ()).is_float and not TensorInfo("I64", ()).is_float


def corruptions(data: bytes) -> dict[str, bytes]:
    return {
        "truncated": data[:-10],
        "extra bytes": data + b"\0" * 16,
        "junk": b"\x80\x04\x95 pickled junk, not a header",
        "empty": b"",
        "bad JSON header": struct.pack("<Q", 5) + b"{abc}",
        "list header": struct.pack("<Q", 7) + b"[1,2,3]",
        "huge header length": struct.pack("<Q", 10**12) + b"{}",
    }


@pytest.mark.parametrize("kind", list(corruptions(b"")))
def test_corrupt_safetensors_are_one_line_errors_naming_the_file(good_file, kind):
    path = good_file.with_name("bad.safetensors")
    path.write_bytes(corruptions(good_file.read_bytes())[kind])

    with pytest.raises(UnsafeWeightsError, match="is not a valid safetensors file") as caught:
        read_tensor_infos(path)
    assert one_line(caught).startswith(f"{path} ")
    assert caught.value.reference == str(path)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"{not json", "is not valid JSON (JSONDecodeError"),
        (b"\xff\xfe{}", "is not valid JSON (UnicodeDecodeError"),
        (b"[1, 2]", "holds an array, not a JSON object"),
        (b"null", "holds null, not a JSON object"),
        (b"3", "holds a number, not a JSON object"),
    ],
)
def test_json_files_must_hold_an_object(tmp_path, content, fragment):
    path = tmp_path / "config.json"
    path.write_bytes(content)

    with pytest.raises(UnsafeWeightsError) as caught:
        read_json_object(path, "alice/x/config.json")
    message = one_line(caught)
    assert message.startswith("alice/x/config.json ") and fragment in message

    path.write_text(json.dumps({"a": 1}))
    assert read_json_object(path, "alice/x/config.json") == {"a": 1}

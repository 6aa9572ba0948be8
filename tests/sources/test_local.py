"""Tests of hfsoup.sources.local: a model folder reads the weights `from_pretrained` would, and refuses bad files."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from transformers import BertForSequenceClassification

from hfsoup.errors import UnsafeWeightsError
from hfsoup.soup import load_ingredient
from hfsoup.sources import LocalSource

INDEX = "model.safetensors.index.json"


def one_line(caught: pytest.ExceptionInfo) -> str:
    message = str(caught.value)
    assert "\n" not in message and message == message.strip()
    return message


def add_shards(folder: Path, of: Path, tmp_path: Path) -> list[str]:
    """Put the weights of the model folder `of`, saved in shards with their index, into `folder`."""
    sharded = tmp_path / f"shards-of-{of.name}"
    BertForSequenceClassification.from_pretrained(of).save_pretrained(sharded, max_shard_size="50KB")
    names = sorted(p.name for p in sharded.glob("model-*.safetensors"))
    assert len(names) > 1
    for name in [*names, INDEX]:
        shutil.copy(sharded / name, folder / name)
    return names


def assert_reads(ingredient, folder: Path, expected: dict[str, torch.Tensor]) -> None:
    """The ingredient reads `expected`, and so does transformers' own `from_pretrained` of `folder`."""
    loaded = BertForSequenceClassification.from_pretrained(folder).state_dict()
    read = dict(ingredient.tensors())
    assert read.keys() == expected.keys()
    for name, tensor in read.items():
        assert torch.equal(tensor, expected[name]), name
        assert torch.equal(loaded[name], expected[name]), name


@pytest.fixture
def both_layouts(tiny_ingredient_dirs, tmp_path) -> tuple[Path, list[str]]:
    """A folder with ft1 as `model.safetensors` and ft2 as shards with their index, side by side."""
    folder = tmp_path / "both"
    shutil.copytree(tiny_ingredient_dirs[0], folder)
    return folder, add_shards(folder, tiny_ingredient_dirs[1], tmp_path)


def state(folder: Path) -> dict[str, torch.Tensor]:
    return dict(load_ingredient(str(folder)).tensors())


# ---------------------------------------------------------------- which files


def test_single_file_is_read_when_an_index_is_there_too(both_layouts, tiny_ingredient_dirs):
    folder, _ = both_layouts

    ingredient = load_ingredient(str(folder))

    assert ingredient.source.weight_files() == [folder / "model.safetensors"]  # the old rule read the shards
    assert_reads(ingredient, folder, state(tiny_ingredient_dirs[0]))


def test_explicit_transformers_weights_in_config_wins(both_layouts, tiny_ingredient_dirs):
    folder, shards = both_layouts
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "transformers_weights": INDEX}))

    ingredient = load_ingredient(str(folder))

    assert ingredient.source.weight_files() == [folder / name for name in shards]
    assert_reads(ingredient, folder, state(tiny_ingredient_dirs[1]))


# ---------------------------------------------------------------- paths that leave the folder


@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_index_entries_outside_the_folder_are_refused(tiny_ingredient_dirs, tmp_path, how):
    outside = tmp_path / "other"
    shutil.copytree(tiny_ingredient_dirs[1], outside)  # a real model.safetensors the entry points at
    folder = tmp_path / "model"
    shutil.copytree(tiny_ingredient_dirs[0], folder)
    (folder / "model.safetensors").unlink()
    entry = "../other/model.safetensors" if how == "relative" else str(outside / "model.safetensors")
    (folder / INDEX).write_text(json.dumps({"weight_map": {"classifier.bias": entry}}))

    with pytest.raises(UnsafeWeightsError, match="outside the model folder") as caught:
        load_ingredient(str(folder))
    assert repr(entry) in one_line(caught) and f"{folder}/{INDEX}" in one_line(caught)


def test_explicit_weights_outside_the_folder_are_refused(tiny_ingredient_dirs, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_ingredient_dirs[0], folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(
        json.dumps({**config, "transformers_weights": f"../{tiny_ingredient_dirs[1].name}/model.safetensors"})
    )

    with pytest.raises(
        UnsafeWeightsError, match=r"config.json \(transformers_weights\) names the weight file"
    ):
        LocalSource(folder)


# ---------------------------------------------------------------- corrupt files


def weight_corruptions(data: bytes) -> dict[str, bytes]:
    return {
        "truncated": data[:-100],
        "junk": b"\x80\x04\x95 pickled junk, not a header",
        "bad JSON header": struct.pack("<Q", 5) + b"{abc}",
        "list header": struct.pack("<Q", 7) + b"[1,2,3]",
    }


@pytest.mark.parametrize("kind", list(weight_corruptions(b"")))
def test_corrupt_weights_are_one_line_errors_naming_the_file(tiny_ingredient_dirs, tmp_path, kind):
    folder = tmp_path / "model"
    shutil.copytree(tiny_ingredient_dirs[0], folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weight_corruptions(weights.read_bytes())[kind])

    ingredient = load_ingredient(str(folder))  # weights are read lazily
    with pytest.raises(UnsafeWeightsError, match="is not a valid safetensors file") as caught:
        ingredient.tensor_infos  # noqa: B018
    assert one_line(caught).startswith(f"{weights} is not a valid safetensors file (")
    with pytest.raises(UnsafeWeightsError, match="is not a valid safetensors file"):
        list(ingredient.tensors())


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b'{"weight_map": {', "is not valid JSON (JSONDecodeError"),
        (b"\xff\xfe\x00\x01", "is not valid JSON (UnicodeDecodeError"),
        (b'["model-00001-of-00002.safetensors"]', "holds an array, not a JSON object"),
        (b'{"weight_map": ["model-00001-of-00002.safetensors"]}', "has no 'weight_map' object"),
    ],
)
def test_corrupt_index_is_a_one_line_error_naming_it(tiny_ingredient_dirs, tmp_path, content, fragment):
    folder = tmp_path / "model"
    shutil.copytree(tiny_ingredient_dirs[0], folder)
    add_shards(folder, tiny_ingredient_dirs[0], tmp_path)
    (folder / "model.safetensors").unlink()
    (folder / INDEX).write_bytes(content)

    with pytest.raises(UnsafeWeightsError) as caught:
        load_ingredient(str(folder))
    message = one_line(caught)
    assert message.startswith(f"{folder}/{INDEX} ") and fragment in message


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(b'{"model_type": "bert",', "is not valid JSON (JSONDecodeError"), (b"[]", "holds an array")],
)
def test_config_that_is_not_a_json_object_is_a_one_line_error(
    tiny_ingredient_dirs, tmp_path, content, fragment
):
    folder = tmp_path / "model"
    shutil.copytree(tiny_ingredient_dirs[0], folder)
    (folder / "config.json").write_bytes(content)

    with pytest.raises(UnsafeWeightsError) as caught:
        load_ingredient(str(folder))
    assert one_line(caught).startswith(f"{folder}/config.json ") and fragment in one_line(caught)


def test_content_hash_covers_the_files_that_are_read(both_layouts, tiny_ingredient_dirs):
    folder, _ = both_layouts

    assert LocalSource(folder).content_hash == LocalSource(tiny_ingredient_dirs[0]).content_hash
    assert LocalSource(folder).content_hash != LocalSource(tiny_ingredient_dirs[1]).content_hash

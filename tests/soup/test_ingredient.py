"""Tests of hfsoup.soup.ingredient (and the local sources it reads): local model folders, lazy tensors, headers, pickle refusal, head detection."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest
import torch
from tiny_models import save_model_folder, tiny_bert, tiny_config, tiny_tokenizer
from transformers import (
    BertForSequenceClassification,
    BertModel,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from hfsoup.errors import IngredientNotFoundError, UnsafeWeightsError
from hfsoup.soup import Ingredient, load_ingredient, load_ingredients
from hfsoup.sources import IngredientSource, LocalSource, TensorInfo, read_tensor_infos

DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.int64: "I64"}


def _state_dict(folder: Path) -> dict[str, torch.Tensor]:
    return BertForSequenceClassification.from_pretrained(folder).state_dict()


def _copy_metadata(source: Path, target: Path) -> Path:
    """A folder with `source`'s config and tokenizer but no weights."""
    target.mkdir(parents=True)
    for file in source.iterdir():
        if not file.name.endswith(".safetensors"):
            shutil.copy(file, target / file.name)
    return target


def test_local_ingredient_reads_config_infos_and_every_tensor(tiny_ingredient_dirs):
    folder = tiny_ingredient_dirs[0]
    ingredient = load_ingredient(str(folder))
    expected = _state_dict(folder)

    assert isinstance(ingredient.source, LocalSource)
    assert isinstance(ingredient.source, IngredientSource)
    assert ingredient.name == folder.name
    assert ingredient.reference == str(folder)
    assert ingredient.revision is None
    assert ingredient.config.hidden_size == 32
    assert ingredient.tensor_infos == {
        name: TensorInfo(DTYPES[t.dtype], tuple(t.shape)) for name, t in expected.items()
    }
    read = dict(ingredient.tensors())
    assert read.keys() == expected.keys()
    for name, tensor in read.items():
        assert torch.equal(tensor, expected[name]), name


def test_tensors_follow_the_order_asked_and_tensor_reads_one(tiny_ingredient_dirs):
    ingredient = load_ingredient(str(tiny_ingredient_dirs[0]))
    names = ["classifier.bias", "bert.pooler.dense.weight", "bert.embeddings.LayerNorm.weight"]

    assert [name for name, _ in ingredient.tensors(names)] == names
    assert torch.equal(
        ingredient.tensor("classifier.bias"), _state_dict(tiny_ingredient_dirs[0])["classifier.bias"]
    )
    with pytest.raises(KeyError, match="no tensor named 'nope'"):
        ingredient.tensors(["classifier.bias", "nope"])


def test_tensor_infos_come_from_the_header_alone(tiny_ingredient_dirs, tmp_path):
    source = tiny_ingredient_dirs[0]
    folder = _copy_metadata(source, tmp_path / "header-only")
    data = (source / "model.safetensors").read_bytes()
    header_length = struct.unpack("<Q", data[:8])[0]
    garbage = bytes(len(data) - 8 - header_length)  # every tensor's bytes replaced: only the header is read
    (folder / "model.safetensors").write_bytes(data[: 8 + header_length] + garbage)

    truncated = LocalSource(folder).tensor_infos()

    assert truncated == LocalSource(source).tensor_infos()
    assert truncated["classifier.weight"] == TensorInfo("F32", (2, 32))
    assert read_tensor_infos(folder / "model.safetensors") == truncated


def test_a_file_that_is_not_safetensors_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x80\x04\x95 not a safetensors header at all")

    with pytest.raises(UnsafeWeightsError, match="not a valid safetensors file"):
        read_tensor_infos(path)


def test_sharded_folder_reads_the_same_tensors_as_a_single_file(tiny_ingredient_dirs, tmp_path):
    source = tiny_ingredient_dirs[0]
    sharded = tmp_path / "sharded"
    BertForSequenceClassification.from_pretrained(source).save_pretrained(sharded, max_shard_size="50KB")
    tiny_tokenizer(sharded).save_pretrained(sharded)
    assert (sharded / "model.safetensors.index.json").is_file()

    whole, split = load_ingredient(str(source)), load_ingredient(str(sharded))

    assert len(split.source.weight_files()) > 1
    assert split.tensor_infos == whole.tensor_infos
    names = list(whole.tensor_infos)
    for (name, a), (other, b) in zip(whole.tensors(names), split.tensors(names), strict=True):
        assert name == other and torch.equal(a, b), name


def test_missing_shard_is_reported(tiny_ingredient_dirs, tmp_path):
    sharded = tmp_path / "sharded"
    BertForSequenceClassification.from_pretrained(tiny_ingredient_dirs[0]).save_pretrained(
        sharded, max_shard_size="50KB"
    )
    next(sharded.glob("model-*.safetensors")).unlink()

    with pytest.raises(IngredientNotFoundError, match="missing shard"):
        load_ingredient(str(sharded))


def test_pickle_only_folder_is_refused_with_a_one_line_fix(tiny_ingredient_dirs, tmp_path):
    folder = _copy_metadata(tiny_ingredient_dirs[0], tmp_path / "pickled")
    (folder / "pytorch_model.bin").write_bytes(b"pickle bytes that must never be loaded")

    with pytest.raises(UnsafeWeightsError) as caught:
        load_ingredient(str(folder))

    message = str(caught.value)
    assert "\n" not in message
    assert "pytorch_model.bin" in message and "arbitrary code" in message and "save_pretrained" in message
    assert caught.value.reference == str(folder)


def test_pickle_files_next_to_safetensors_are_ignored(tiny_ingredient_dirs, tmp_path):
    folder = tmp_path / "with-training-args"
    shutil.copytree(tiny_ingredient_dirs[0], folder)
    (folder / "training_args.bin").write_bytes(b"never read")

    assert load_ingredient(str(folder)).source.weight_files() == [folder / "model.safetensors"]


@pytest.mark.parametrize("reference", ["{tmp}/does-not-exist", "./no/such/folder", "~/no-such-hfsoup-folder"])
def test_missing_folder_is_refused_without_asking_the_hub(reference, tmp_path):
    with pytest.raises(IngredientNotFoundError) as caught:
        load_ingredient(reference.format(tmp=tmp_path))

    assert "\n" not in str(caught.value)
    assert "No model folder" in str(caught.value)


def test_folder_without_config_or_weights_is_refused(tiny_ingredient_dirs, tmp_path):
    no_config = tmp_path / "no-config"
    no_config.mkdir()
    shutil.copy(tiny_ingredient_dirs[0] / "model.safetensors", no_config)
    no_weights = _copy_metadata(tiny_ingredient_dirs[0], tmp_path / "no-weights")

    with pytest.raises(IngredientNotFoundError, match=r"no config\.json"):
        load_ingredient(str(no_config))
    with pytest.raises(IngredientNotFoundError, match="has no weights"):
        load_ingredient(str(no_weights))
    with pytest.raises(IngredientNotFoundError, match="No model folder"):
        LocalSource(no_config / "model.safetensors")


def test_tokenizer_is_loaded_only_when_files_exist(tiny_ingredient_dirs, tmp_path):
    with_tokenizer = load_ingredient(str(tiny_ingredient_dirs[0]))
    folder = tmp_path / "weights-only"
    tiny_bert(seed=0).save_pretrained(folder)
    without = load_ingredient(str(folder))

    assert with_tokenizer.has_tokenizer
    assert with_tokenizer.tokenizer().get_vocab() == tiny_tokenizer(tmp_path / "tok").get_vocab()
    assert not without.has_tokenizer
    with pytest.raises(IngredientNotFoundError, match="no tokenizer files"):
        without.tokenizer()


def test_bert_head_body_and_label_tensors(tiny_ingredient_dirs):
    ingredient = load_ingredient(str(tiny_ingredient_dirs[0]))

    assert ingredient.base_model_prefix == "bert"
    assert ingredient.head_tensor_names == {"classifier.weight", "classifier.bias"}
    assert ingredient.label_tensor_names == ("classifier.bias", "classifier.weight")
    assert ingredient.body_tensor_names["encoder.layer.0.output.dense.weight"] == (
        "bert.encoder.layer.0.output.dense.weight"
    )
    assert len(ingredient.body_tensor_names) == len(ingredient.tensor_infos) - 2


def test_roberta_label_tensors_are_the_output_projection(tmp_path):
    config = RobertaConfig(
        vocab_size=113,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        num_labels=3,
    )
    RobertaForSequenceClassification(config).save_pretrained(tmp_path / "roberta")

    ingredient = load_ingredient(str(tmp_path / "roberta"))

    assert ingredient.base_model_prefix == "roberta"
    assert {"classifier.dense.weight", "classifier.out_proj.weight"} <= ingredient.head_tensor_names
    assert ingredient.label_tensor_names == ("classifier.out_proj.bias", "classifier.out_proj.weight")


def test_llama_label_tensors_are_its_score_weight_and_an_unknown_family_has_none(family_dirs, tmp_path):
    from transformers import AutoConfig, GPT2ForSequenceClassification

    llama = load_ingredient(str(family_dirs("llama")["a"]))
    GPT2ForSequenceClassification(
        AutoConfig.for_model("gpt2", n_embd=32, n_layer=1, n_head=2, vocab_size=99, n_positions=64)
    ).save_pretrained(tmp_path / "gpt2")
    unknown = load_ingredient(str(tmp_path / "gpt2"))

    assert llama.head_layout.pools_last_token and llama.head_tensor_names == {"score.weight"}
    assert llama.label_tensor_names == ("score.weight",)  # no bias
    assert unknown.head_layout is None and unknown.label_tensor_names == ()
    assert unknown.head_tensor_names == {"score.weight"}  # the backbone is still known, from transformers


def test_a_bare_backbone_has_no_head(tmp_path):
    torch.manual_seed(0)
    save_model_folder(BertModel(tiny_config()), tiny_tokenizer(tmp_path / "bare"), tmp_path / "bare")

    ingredient = load_ingredient(str(tmp_path / "bare"))

    assert ingredient.base_model_prefix is None
    assert ingredient.head_tensor_names == frozenset()
    assert ingredient.label_tensor_names == ()
    assert ingredient.body_tensor_names["pooler.dense.weight"] == "pooler.dense.weight"


def test_label_permutation_reorders_only_the_classifier_rows(tmp_path):
    model = tiny_bert(seed=4, num_labels=3)
    save_model_folder(model, tiny_tokenizer(tmp_path / "m"), tmp_path / "m")
    ingredient = load_ingredient(str(tmp_path / "m"))
    expected = model.state_dict()

    original = ingredient
    ingredient = ingredient.reordered([2, 0, 1])
    assert original.label_permutation is None
    read = dict(ingredient.tensors())

    assert torch.equal(read["classifier.weight"], expected["classifier.weight"][[2, 0, 1]])
    assert torch.equal(read["classifier.bias"], expected["classifier.bias"][[2, 0, 1]])
    assert torch.equal(ingredient.tensor("classifier.bias"), expected["classifier.bias"][[2, 0, 1]])
    assert torch.equal(read["bert.pooler.dense.weight"], expected["bert.pooler.dense.weight"])


def test_load_ingredients_keeps_names_unique(tiny_ingredient_dirs, tmp_path):
    copies = []
    for run in ("run-a", "run-b"):
        copies.append(tmp_path / run / "checkpoint-500")
        shutil.copytree(tiny_ingredient_dirs[0], copies[-1])

    ingredients = load_ingredients([str(copies[0]), str(copies[1]), str(tiny_ingredient_dirs[1])])

    names = ["run-a/checkpoint-500", "run-b/checkpoint-500", tiny_ingredient_dirs[1].name]
    assert [i.name for i in ingredients] == names
    assert all(isinstance(i, Ingredient) for i in ingredients)


def _spellings(folder: Path, tmp_path: Path) -> list[str]:
    """One folder written three ways: as is, through `..` with a trailing slash, and through a symlink."""
    link = tmp_path / "link"
    link.symlink_to(folder, target_is_directory=True)
    return [str(folder), f"{folder}/../{folder.name}/", str(link)]


def test_identity_is_the_folder_however_it_is_spelled(tiny_ingredient_dirs, tmp_path):
    folder = tiny_ingredient_dirs[0]

    identities = {load_ingredient(spelling).identity for spelling in _spellings(folder, tmp_path)}

    assert identities == {str(folder.resolve())}
    assert load_ingredient(str(tiny_ingredient_dirs[1])).identity != str(folder.resolve())


def test_a_config_transformers_cannot_load_is_one_line_naming_it(tiny_ingredient_dirs, tmp_path):
    import json

    def with_config(name: str, **fields) -> Path:
        folder = tmp_path / name
        shutil.copytree(tiny_ingredient_dirs[0], folder)
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **fields}))
        return folder

    custom = with_config("custom", model_type="my-bert", auto_map={"AutoConfig": "configuration_x.XConfig"})
    unknown = with_config("unknown", model_type="no-such-architecture")

    with pytest.raises(UnsafeWeightsError) as caught:
        load_ingredient(str(custom))
    assert str(caught.value).startswith(
        f"{custom}/config.json declares custom code (auto_map) for model type"
    )
    assert "\n" not in str(caught.value)
    with pytest.raises(IngredientNotFoundError) as caught:
        load_ingredient(str(unknown))
    assert str(caught.value).startswith(f"{unknown}/config.json is not a config transformers can load")
    assert "'no-such-architecture'" in str(caught.value) and "\n" not in str(caught.value)

"""Tests of hfsoup.soup.compat.classifier: known head layouts, and the pad token of decoder classifiers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from families import DECODERS, family_tokenizer
from tiny_models import save_model_folder, tiny_config, tiny_tokenizer
from transformers import AutoConfig, BertForMaskedLM, BertModel, GPT2ForSequenceClassification

from hfsoup.soup import check_compatibility, load_ingredient, load_ingredients
from hfsoup.soup.compat import CompatReport
from hfsoup.soup.compat.classifier import check_heads, check_pad_tokens


def _copy(folder: Path, destination: Path, **config_fields) -> str:
    """A copy of a model folder with some fields of its config.json replaced."""
    shutil.copytree(folder, destination)
    path = destination / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config_fields}))
    return str(destination)


def _checked(check, folders) -> CompatReport:
    ingredients = load_ingredients([str(folder) for folder in folders])
    report = CompatReport(ingredients=[i.name for i in ingredients])
    check(ingredients, report)
    return report


def test_every_family_of_the_fixtures_passes(family_dirs):
    for model_type in ("bert", "roberta", "modernbert", "llama"):
        folders = family_dirs(model_type)
        for check in (check_heads, check_pad_tokens):
            assert _checked(check, [folders["a"], folders["b_swapped"]]).errors == []


def test_an_unknown_model_type_is_one_error_naming_the_supported_ones(tmp_path):
    config = AutoConfig.for_model("gpt2", n_embd=32, n_layer=1, n_head=2, vocab_size=99, n_positions=64)
    for name in ("g1", "g2"):
        GPT2ForSequenceClassification(config).save_pretrained(tmp_path / name)

    report = check_compatibility(load_ingredients([str(tmp_path / "g1"), str(tmp_path / "g2")]))

    unknown = [error for error in report.errors if "does not know" in error]
    assert len(unknown) == 1  # once per model type, not once per ingredient
    assert unknown[0].startswith("g1: hfsoup does not know the classification head of model type 'gpt2' ")
    assert "GPT2ForSequenceClassification" in unknown[0] and "bert, camembert" in unknown[0]
    assert "does not know the classification head of model type 'gpt2'" in report.summary()


def test_a_masked_lm_checkpoint_is_not_a_classifier(tiny_ingredient_dirs, tmp_path):
    torch.manual_seed(0)
    masked = save_model_folder(
        BertForMaskedLM(tiny_config()), tiny_tokenizer(tmp_path / "mlm"), tmp_path / "mlm"
    )

    report = _checked(check_heads, [tiny_ingredient_dirs[0], masked])

    (error,) = report.errors
    assert error.startswith("mlm is not a bert sequence classifier: its tensors cls.predictions.")
    assert "lie outside the classification head (classifier)" in error
    assert "AutoModelForSequenceClassification" in error


def test_a_head_without_its_final_projection_is_refused(tiny_ingredient_dirs, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = Path(shutil.copytree(tiny_ingredient_dirs[0], tmp_path / "headless"))
    weights = load_file(folder / "model.safetensors")
    del weights["classifier.weight"]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})

    (error,) = _checked(check_heads, [folder]).errors

    assert error.startswith(
        "headless is not a bert sequence classifier: it lacks classifier.weight, the final projection of the "
        "classification head (classifier); "
    )


def test_a_bare_backbone_has_no_head_to_check(tmp_path):
    torch.manual_seed(0)
    bare = save_model_folder(BertModel(tiny_config()), tiny_tokenizer(tmp_path / "bare"), tmp_path / "bare")

    assert _checked(check_heads, [bare]).errors == []


@pytest.mark.parametrize("model_type", DECODERS)
def test_a_decoder_classifier_without_pad_token_id_is_refused(family_dirs, model_type, tmp_path):
    folders = family_dirs(model_type)
    unpadded = _copy(folders["b"], tmp_path / "unpadded", pad_token_id=None)

    report = check_compatibility(load_ingredients([unpadded, _copy(folders["a"], tmp_path / "a")]))

    differs, missing = report.errors  # the config check comes first
    assert missing.startswith(f"unpadded is a {model_type} classifier without a pad_token_id in config.json")
    assert "cannot score batches of more than one text" in missing and "set pad_token_id" in missing
    assert differs.startswith("config pad_token_id differs: null (unpadded) vs 0 (a)")


def test_decoders_whose_pad_token_ids_differ_are_refused(family_dirs, tmp_path):
    folders = family_dirs("qwen2")
    other = Path(_copy(folders["b"], tmp_path / "other", pad_token_id=5))
    tokenizer = family_tokenizer("qwen2")
    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(5)
    tokenizer.save_pretrained(other)

    report = check_compatibility(load_ingredients([str(folders["a"]), str(other)]), check_values=False)

    assert report.errors == [
        "config pad_token_id differs: 0 (a) vs 5 (other); it changes the model's computation."
    ]


def test_a_tokenizer_that_pads_with_another_token_is_refused(family_dirs, tmp_path):
    folders = family_dirs("llama")
    elsewhere = Path(shutil.copytree(folders["a"], tmp_path / "elsewhere"))
    tokenizer = family_tokenizer("llama")
    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(7)
    tokenizer.save_pretrained(elsewhere)
    no_pad = Path(shutil.copytree(folders["b"], tmp_path / "no-pad"))
    tokenizer.pad_token = None
    tokenizer.save_pretrained(no_pad)

    report = _checked(check_pad_tokens, [elsewhere, no_pad])

    assert report.errors == [
        "the tokenizer of elsewhere pads with token id 7 but its config has pad_token_id 0, so its logits would "
        "be read at the wrong token; save the tokenizer with the pad token of id 0 "
        "(tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad_token_id)).",
        "the tokenizer of no-pad has no pad token but its config has pad_token_id 0, so its logits would be "
        "read at the wrong token; save the tokenizer with the pad token of id 0 "
        "(tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad_token_id)).",
    ]


def test_a_decoder_base_without_pad_token_id_is_fine(family_dirs, tmp_path):
    # A decoder's fine-tunes set the pad token their head pools at; the model they came from need not.
    folders = family_dirs("llama")
    base = _copy(folders["a"], tmp_path / "base", pad_token_id=None, architectures=["LlamaForCausalLM"])

    report = check_compatibility(
        load_ingredients([str(folders["a"]), str(folders["b"])]), base=load_ingredient(base)
    )

    assert report.errors == []


def test_a_decoder_fixture_tokenizer_pads_with_its_config_pad_token(family_dirs):
    ingredient = load_ingredient(str(family_dirs("qwen2")["a"]))

    assert ingredient.tokenizer().pad_token_id == ingredient.config.pad_token_id == 0
    assert ingredient.tokenizer().padding_side == "left"

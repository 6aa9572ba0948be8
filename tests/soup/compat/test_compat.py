"""Tests of hfsoup.soup.compat (check_compatibility): every incompatibility reported at once, label alignment, common base."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models import VOCAB, finetuned_variant, save_model_folder, tiny_bert, tiny_tokenizer
from transformers import (
    BertForSequenceClassification,
    BertTokenizer,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from hfsoup.errors import IncompatibleIngredientsError, InvalidSettingError
from hfsoup.soup import load_ingredient, load_ingredients
from hfsoup.soup.compat import CompatReport, check_compatibility, ensure_compatible

SENTIMENT = ["negative", "positive"]
NLI = ["contradiction", "entailment", "neutral"]


def _name_labels(model, labels: list[str]):
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {label: index for index, label in enumerate(labels)}
    return model


def _save(model, folder: Path, tokenizer=None) -> str:
    save_model_folder(model, tokenizer or tiny_tokenizer(folder), folder)
    return str(folder)


@pytest.fixture(scope="module")
def sentiment_dirs(tmp_path_factory) -> list[str]:
    """A named-label base and two fine-tuned variants of it."""
    root = tmp_path_factory.mktemp("sentiment")
    base = _name_labels(tiny_bert(seed=0), SENTIMENT)
    return [_save(base, root / "base")] + [
        _save(_name_labels(finetuned_variant(base, seed), SENTIMENT), root / f"ft{seed}") for seed in (1, 2)
    ]


@pytest.fixture(scope="module")
def broken_dirs(tmp_path_factory, sentiment_dirs) -> list[str]:
    """Two ingredients with seven problems between them."""
    root = tmp_path_factory.mktemp("broken")
    wider = _name_labels(tiny_bert(seed=0, num_labels=3, hidden_size=48), ["negative", "neutral", "positive"])
    with torch.no_grad():
        wider.bert.encoder.layer[0].attention.self.query.weight[0, 0] = float("nan")
    other_vocab = {("zebra" if token == "the" else token): i for i, token in enumerate(VOCAB)}
    first = _save(wider, root / "wider", BertTokenizer(vocab=other_vocab, do_lower_case=True))

    base = BertForSequenceClassification.from_pretrained(sentiment_dirs[0])
    second = _save(_name_labels(finetuned_variant(base, 9), ["cat", "dog"]), root / "renamed")
    weights = load_file(Path(second) / "model.safetensors")
    weights["bert.pooler.dense.renamed"] = weights.pop("bert.pooler.dense.bias")
    save_file(weights, Path(second) / "model.safetensors", metadata={"format": "pt"})
    return [first, second]


EXPECTED_ERRORS = [
    "config hidden_size differs: 32 (ft1, ft2, renamed) vs 48 (wider)",
    "num_labels differs",
    "label sets differ: ft1 has ['negative', 'positive'], renamed has ['cat', 'dog']",
    "tensor names differ: renamed lacks 1 tensor(s) ft1 has (bert.pooler.dense.bias) and has 1",
    "tensor(s) differ in shape",
    "tokenizer vocabularies differ: wider (112 tokens) vs ft1 (112 tokens), 1 token/id pair(s) only in wider "
    "('zebra'=109), 1 only in ft1 ('the'=109).",
    "wider has non-finite weights in 1 tensor(s): bert.encoder.layer.0.attention.self.query.weight (1 NaN, 0 Inf)",
]


def test_variants_of_one_base_are_compatible(sentiment_dirs):
    report = check_compatibility(
        load_ingredients(sentiment_dirs[1:]), base=load_ingredient(sentiment_dirs[0])
    )

    assert report.ok(), report.to_text()
    assert report.errors == [] and report.warnings == []
    assert any("backbones are close" in note for note in report.notes)
    assert report.to_text().endswith("Result: OK, these ingredients can be averaged.")


def test_every_problem_is_reported_at_once(sentiment_dirs, broken_dirs):
    report = check_compatibility(load_ingredients(sentiment_dirs[1:] + broken_dirs))

    assert not report.ok()
    assert len(report.errors) == len(EXPECTED_ERRORS), report.to_text()
    for expected in EXPECTED_ERRORS:
        assert any(expected in error for error in report.errors), (expected, report.to_text())
    assert all("\n" not in line for line in report.errors + report.warnings + report.notes)
    text = report.to_text()
    assert f"Errors ({len(EXPECTED_ERRORS)}):" in text and "Result: INCOMPATIBLE" in text
    assert all(error in text for error in report.errors)


def test_ensure_compatible_raises_with_the_whole_report(sentiment_dirs, broken_dirs):
    ingredients = load_ingredients(sentiment_dirs[1:] + broken_dirs)

    with pytest.raises(IncompatibleIngredientsError) as caught:
        ensure_compatible(ingredients, check_values=False)

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("6 problem(s) make these ingredients incompatible: config hidden_size differs")
    assert message.endswith("run `hfsoup inspect` on them for the full report.")
    assert isinstance(caught.value.report, CompatReport) and len(caught.value.report.errors) == 6
    assert ensure_compatible(load_ingredients(sentiment_dirs[1:])).ok()


def _classifier(family: str, seed: int, labels: list[str]):
    if family == "bert":
        return _name_labels(tiny_bert(seed=seed, num_labels=len(labels)), labels)
    torch.manual_seed(seed)
    config = RobertaConfig(
        vocab_size=113,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        num_labels=len(labels),
    )
    return _name_labels(RobertaForSequenceClassification(config).eval(), labels)


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_permuted_labels_are_aligned_to_the_first_ingredient(family, tmp_path):
    first = _classifier(family, seed=1, labels=NLI)
    model = _classifier(family, seed=2, labels=NLI)
    expected = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    shuffled = ["neutral", "contradiction", "entailment"]
    rows = [NLI.index(label) for label in shuffled]
    output = model.classifier if family == "bert" else model.classifier.out_proj
    with torch.no_grad():
        output.weight.copy_(output.weight[rows])
        output.bias.copy_(output.bias[rows])
    _name_labels(model, shuffled)
    (tmp_path / "a").mkdir()
    first.save_pretrained(tmp_path / "a")
    model.save_pretrained(tmp_path / "b")
    ingredients = load_ingredients([str(tmp_path / "a"), str(tmp_path / "b")])

    report = check_compatibility(ingredients, check_values=False)

    assert report.ok(), report.to_text()
    assert any("b orders its labels" in warning and "reordered" in warning for warning in report.warnings)
    aligned = report.aligned(ingredients)[1]
    assert aligned.label_permutation == [1, 2, 0]
    assert ingredients[1].label_permutation is None  # the report never changes the ingredients
    read = dict(aligned.tensors())
    assert len(aligned.label_tensor_names) == 2
    for name, tensor in read.items():
        assert torch.equal(tensor, expected[name]), name


def test_generic_labels_are_matched_by_index_with_a_warning(sentiment_dirs, tiny_ingredient_dirs):
    # Issue 7.6: generic labels are taken to be in the common order, and the terminal says so.
    report = check_compatibility(load_ingredients([sentiment_dirs[1], str(tiny_ingredient_dirs[0])]))

    assert report.ok(), report.to_text()
    assert report.label_names == ["negative", "positive"]
    assert report.label_orders == [None, None]
    assert any(
        tiny_ingredient_dirs[0].name in warning
        and "LABEL_0" in warning
        and "['negative', 'positive']" in warning
        for warning in report.warnings
    ), report.warnings


def test_unrelated_models_get_the_common_base_warning(tmp_path, tiny_ingredient_dirs):
    unrelated = [_save(tiny_bert(seed=seed), tmp_path / f"seed{seed}") for seed in (10, 11)]

    far = check_compatibility(load_ingredients(unrelated))
    close = check_compatibility(load_ingredients([str(d) for d in tiny_ingredient_dirs]))

    assert far.ok()
    assert len(far.warnings) == 1 and "do not look fine-tuned from one common base" in far.warnings[0]
    assert "seed10–seed11 1.4" in far.warnings[0]
    assert close.warnings == []


def test_different_declared_bases_are_warned(tmp_path, tiny_ingredient_dirs):
    folders = []
    for index, card_base in enumerate(["bert-base-uncased", "roberta-base", "bert-base-uncased"]):
        folders.append(tmp_path / f"declared{index}")
        shutil.copytree(tiny_ingredient_dirs[index], folders[-1])
        (folders[-1] / "README.md").write_text(f"---\nbase_model: {card_base}\n---\n# A fine-tune\n")

    mixed = check_compatibility(load_ingredients([str(f) for f in folders]), check_values=False)
    same = check_compatibility(load_ingredients([str(folders[0]), str(folders[2])]), check_values=False)

    assert len(mixed.warnings) == 1 and "declare different base models" in mixed.warnings[0]
    assert "declared1: roberta-base" in mixed.warnings[0]
    assert same.warnings == []


def test_float_dtype_differences_are_a_note(tmp_path, tiny_ingredient_dirs):
    half = BertForSequenceClassification.from_pretrained(tiny_ingredient_dirs[1], dtype=torch.bfloat16)
    folder = _save(half, tmp_path / "bf16")

    report = check_compatibility(load_ingredients([str(tiny_ingredient_dirs[0]), folder]))

    assert report.ok(), report.to_text()
    assert any("different float dtypes" in note and "F32" in note and "BF16" in note for note in report.notes)


def test_metadata_checks_read_no_weights(tmp_path, tiny_ingredient_dirs):
    folder = tmp_path / "header-only"
    shutil.copytree(tiny_ingredient_dirs[1], folder)
    data = (folder / "model.safetensors").read_bytes()
    header = 8 + struct.unpack("<Q", data[:8])[0]
    (folder / "model.safetensors").write_bytes(data[:header] + bytes(len(data) - header))  # tensors zeroed

    report = check_compatibility(
        load_ingredients([str(tiny_ingredient_dirs[0]), str(folder)]), check_values=False
    )

    assert report.ok(), report.to_text()
    assert not report.weights_checked and "weights were not read" in report.to_text()


def test_a_mismatched_base_is_an_error(tmp_path, tiny_ingredient_dirs):
    wide_base = _save(tiny_bert(seed=0, hidden_size=48), tmp_path / "wide")

    report = check_compatibility(
        load_ingredients([str(d) for d in tiny_ingredient_dirs]), base=load_ingredient(wide_base)
    )

    assert any("hidden_size differs" in error and "wide (base)" in error for error in report.errors)
    assert any(
        error.startswith("wide (base) differs in shape in 37 backbone tensor(s)") for error in report.errors
    )


def test_duplicates_and_empty_lists(tiny_ingredient_dirs):
    twice = load_ingredients([str(tiny_ingredient_dirs[0])] * 2)

    assert any("listed 2 times" in w for w in check_compatibility(twice, check_values=False).warnings)
    with pytest.raises(InvalidSettingError):
        check_compatibility([])


def test_config_origin_and_card_must_both_disagree_to_warn(tmp_path, tiny_ingredient_dirs):
    def declared(index: int, origin: str, card: str | None) -> str:
        folder = tmp_path / f"origin{index}"
        shutil.copytree(tiny_ingredient_dirs[index], folder)
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "_name_or_path": origin}))
        if card:
            (folder / "README.md").write_text(f"---\nbase_model: {card}\n---\n")
        return str(folder)

    bert = declared(0, "bert-base-uncased", None)
    roberta = declared(1, "FacebookAI/roberta-base", None)
    agreeing_card = declared(2, "/home/me/runs/checkpoint-500", "bert-base-uncased")

    differ = check_compatibility(load_ingredients([bert, roberta]), check_values=False)
    agree = check_compatibility(load_ingredients([bert, agreeing_card]), check_values=False)

    assert len(differ.warnings) == 1 and "FacebookAI/roberta-base" in differ.warnings[0]
    assert agree.warnings == []


@pytest.mark.parametrize("spelling", ["dotdot", "symlink"])
def test_one_folder_listed_under_two_spellings_is_noticed(tiny_ingredient_dirs, tmp_path, spelling):
    folder = tiny_ingredient_dirs[0]
    if spelling == "symlink":
        other = tmp_path / "link"
        other.symlink_to(folder, target_is_directory=True)
    else:
        other = f"{folder}/../{folder.name}/"

    report = check_compatibility(
        load_ingredients([str(folder), str(other), str(tiny_ingredient_dirs[1])]), check_values=False
    )

    listed = [w for w in report.warnings if "listed 2 times" in w]
    assert len(listed) == 1 and listed[0].startswith(f"{folder.resolve()} is listed 2 times ("), (
        report.warnings
    )
    assert "so it weighs more in the soup" in listed[0]

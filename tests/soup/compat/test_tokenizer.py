"""Tests of hfsoup.soup.compat.tokenizer: tokenizers with one vocabulary must also give the same token ids."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_models import VOCAB, save_model_folder, tiny_bert
from transformers import BertTokenizer

from hfsoup.soup import load_ingredients
from hfsoup.soup.compat import check_compatibility

DEFAULT = {"do_lower_case": True}


def _folder(root: Path, name: str, **tokenizer_options) -> str:
    """The same tiny BERT, saved with a WordPiece tokenizer of the shared vocabulary and these options."""
    folder = root / name
    tokenizer = BertTokenizer(
        vocab={t: i for i, t in enumerate(VOCAB)}, model_max_length=128, **tokenizer_options
    )
    save_model_folder(tiny_bert(seed=0), tokenizer, folder)
    return str(folder)


def _tokenizer_errors(folders: list[str]) -> list[str]:
    report = check_compatibility(load_ingredients(folders), check_values=False)
    return [error for error in report.errors if "tokenizer" in error]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> str:
    return _folder(tmp_path_factory.mktemp("tokenizers"), "uncased", **DEFAULT)


@pytest.mark.parametrize(
    ("options", "setting"),
    [
        ({"do_lower_case": False}, "normalizer.lowercase True vs False"),
        ({**DEFAULT, "strip_accents": False}, "normalizer.strip_accents None vs False"),
        ({**DEFAULT, "tokenize_chinese_chars": False}, "normalizer.handle_chinese_chars True vs False"),
        ({**DEFAULT, "cls_token": "[MASK]", "mask_token": "[CLS]"}, "cls_token '[CLS]' vs '[MASK]'"),
    ],
    ids=["lower-casing", "accents", "chinese characters", "special tokens"],
)
def test_same_vocabulary_but_other_token_ids_is_an_error_naming_the_setting(
    reference, tmp_path, options, setting
):
    # The old check compared vocabularies only, and let every one of these through.
    other = _folder(tmp_path, "other", **options)

    errors = _tokenizer_errors([reference, other])

    assert len(errors) == 1, errors
    error = errors[0]
    assert error.startswith("tokenizers of uncased and other give different token ids (")
    assert setting in error and "gives input_ids" in error
    assert "\n" not in error


def test_identical_tokenizers_pass(reference, tmp_path):
    same = _folder(tmp_path, "same", **DEFAULT)

    report = check_compatibility(load_ingredients([reference, same]), check_values=False)

    assert report.ok(), report.to_text()
    assert not [line for line in report.errors + report.warnings + report.notes if "tokenizer" in line]


def test_a_different_vocabulary_is_reported_before_the_probes(reference, tmp_path):
    folder = tmp_path / "renamed"
    vocab = {("zebra" if token == "the" else token): i for i, token in enumerate(VOCAB)}
    save_model_folder(tiny_bert(seed=0), BertTokenizer(vocab=vocab, **DEFAULT), folder)

    errors = _tokenizer_errors([reference, str(folder)])

    assert len(errors) == 1 and errors[0].startswith("tokenizer vocabularies differ: renamed"), errors
    assert "('zebra'=109)" in errors[0] and "('the'=109)" in errors[0]


def test_an_ingredient_without_tokenizer_files_is_a_note(reference, tmp_path):
    bare = tmp_path / "bare"
    tiny_bert(seed=0).save_pretrained(bare)

    report = check_compatibility(load_ingredients([reference, str(bare)]), check_values=False)

    assert report.ok(), report.to_text()
    assert any(note.startswith("no tokenizer files in bare") for note in report.notes)

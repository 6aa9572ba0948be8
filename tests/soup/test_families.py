"""End to end on every supported family: compatibility, label alignment, independent heads, scoring, merging.

The models are the tiny classifiers of `families.py` (fixture `family_dirs`); merges run through the CLI on
two 16-row slices of MRPC validation from the shared GLUE data, cut to 64 tokens.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from cli_helpers import run, user_error
from families import DECODERS, FAMILIES, MRPC_LABELS, OUTPUT_PROJECTION
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hfsoup.eval import Scorer, get_task, load_split
from hfsoup.soup import check_compatibility, load_ingredients


def quick_mrpc(models, glue_hub_dir) -> list[str]:
    """Arguments of a merge of `models` on MRPC, quicker than `cli_helpers.quick_mrpc`: half the rows and tokens."""
    splits = ("--selection-split", "validation[:16]", "--report-split", "validation[16:32]")
    return [
        *map(str, models),
        "--task",
        "mrpc",
        "--dataset",
        str(glue_hub_dir),
        *splits,
        "--max-length",
        "64",
    ]


# The head matrices a run that draws its own head changes, per family (BERT's head is one linear layer).
HEAD_MATRICES = {
    "bert": ["classifier.weight"],
    "roberta": ["classifier.dense.weight", "classifier.out_proj.weight"],
    "distilbert": ["classifier.weight", "pre_classifier.weight"],
    "deberta-v2": ["classifier.weight", "pooler.dense.weight"],
    "modernbert": ["classifier.weight", "head.dense.weight"],
    "llama": ["score.weight"],
    "qwen2": ["score.weight"],
}


def _weights(folder) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


@pytest.mark.parametrize("family", FAMILIES)
def test_permuted_labels_are_aligned_on_the_final_projection_only(family_dirs, family):
    folders = family_dirs(family)
    ingredients = load_ingredients([str(folders["a"]), str(folders["b_swapped"])])

    report = check_compatibility(ingredients, task_labels=MRPC_LABELS)

    output = OUTPUT_PROJECTION[family]
    assert report.errors == [] and report.label_orders == [None, [1, 0]]
    assert any(
        w.startswith("b_swapped orders its labels") and f"{output}.weight" in w for w in report.warnings
    )
    assert report.independent_tensors == []  # the swapped rows are compared in the common order
    aligned = dict(report.aligned(ingredients)[1].tensors())
    stored, original = _weights(folders["b_swapped"]), _weights(folders["b"])
    assert not torch.equal(stored[f"{output}.weight"], original[f"{output}.weight"])
    for name, tensor in aligned.items():  # the rows of the final projection come back; nothing else moves
        torch.testing.assert_close(tensor, original[name], rtol=0, atol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_independently_drawn_heads_are_detected(family_dirs, family):
    folders = family_dirs(family)

    shared = check_compatibility(load_ingredients([str(folders["a"]), str(folders["b"])]))
    drawn = check_compatibility(load_ingredients([str(folders["a"]), str(folders["redrawn"])]))

    assert shared.ok() and shared.independent_tensors == []
    assert drawn.ok() and drawn.independent_tensors == HEAD_MATRICES[family]


@pytest.mark.parametrize("family", FAMILIES)
def test_fine_tunes_merge_end_to_end_through_the_cli(family_dirs, family, glue_hub_dir, tmp_path, capsys):
    folders = family_dirs(family)
    output = tmp_path / "soup"

    code, out, err = run(
        capsys,
        "merge",
        *quick_mrpc([folders["a"], folders["b_swapped"]], glue_hub_dir),
        "--method",
        "uniform",
        "--output-dir",
        output,
    )

    assert code == 0, err
    assert "uniform" in out and "b_swapped" in out
    soup, a, b = _weights(output), _weights(folders["a"]), _weights(folders["b"])
    assert soup.keys() == a.keys()
    for name, tensor in soup.items():  # b_swapped was read in a's label order: the soup of a and b
        torch.testing.assert_close(tensor, (a[name] + b[name]) / 2)
    model = AutoModelForSequenceClassification.from_pretrained(output)
    assert type(model).__name__.lower().startswith(family.replace("-", ""))
    assert [model.config.id2label[i] for i in range(2)] == list(MRPC_LABELS)
    assert (
        AutoTokenizer.from_pretrained(output).get_vocab()
        == AutoTokenizer.from_pretrained(folders["a"]).get_vocab()
    )


@pytest.mark.parametrize("family", ["roberta", "llama"])
def test_a_uniform_soup_of_independent_heads_is_refused_through_the_cli(
    family_dirs, family, glue_hub_dir, capsys
):
    folders = family_dirs(family)

    line = user_error(
        capsys, "merge", *quick_mrpc([folders["a"], folders["redrawn"]], glue_hub_dir), "--method", "uniform"
    )

    assert f"{HEAD_MATRICES[family][0]}" in line and "--allow-independent-heads" in line


@pytest.mark.parametrize("family", DECODERS)
def test_decoders_are_scored_as_each_text_alone(family_dirs, family, glue_hub_dir):
    # Their tokenizers pad on the left, as decoder tokenizers often do: the head reads each text at its last
    # token that is not padding, and rotary positions are relative, so batches score as texts one by one.
    folder = family_dirs(family)["a"]
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    task = get_task("mrpc")
    rows = load_split(task, "validation[:16]", dataset=str(glue_hub_dir))

    batched = Scorer(model, tokenizer, task, rows, batch_size=8).logits()
    alone = Scorer(model, tokenizer, task, rows, batch_size=1).logits()

    assert tokenizer.padding_side == "left"
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-4)


def test_a_decoder_without_pad_token_id_is_one_cli_error(family_dirs, glue_hub_dir, tmp_path, capsys):
    folders = [shutil.copytree(family_dirs("llama")[role], tmp_path / role) for role in ("a", "b")]
    for folder in folders:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "pad_token_id": None}))

    line = user_error(capsys, "merge", *quick_mrpc(folders, glue_hub_dir))

    assert line.startswith("hfsoup: error: 2 problem(s) make these ingredients incompatible: a is a llama ")
    assert "without a pad_token_id in config.json" in line


def test_an_unknown_family_is_one_cli_error(tmp_path, glue_hub_dir, capsys):
    from transformers import AutoConfig, GPT2ForSequenceClassification

    config = AutoConfig.for_model("gpt2", n_embd=32, n_layer=1, n_head=2, vocab_size=99, n_positions=64)
    for name in ("g1", "g2"):
        GPT2ForSequenceClassification(config).save_pretrained(tmp_path / name)

    line = user_error(capsys, "merge", *quick_mrpc([tmp_path / "g1", tmp_path / "g2"], glue_hub_dir))

    assert "hfsoup does not know the classification head of model type 'gpt2'" in line
    assert "the supported model types are albert, bert," in line

"""End-to-end merges on datasets defined by their columns (`--dataset` with `--text-column`), through the CLI.

The data files are built by the tests in the shapes of well-known Hub datasets (see `dataset_files.py`); the
ingredients are tiny BERTs whose labels are named in another order than the dataset's, so every merge also
checks the label alignment.
"""

from __future__ import annotations

import pytest
import torch
import yaml
from cli_helpers import run, user_error
from dataset_files import NLI_LABELS, nli_jsonl, ratings_csv, sentiment_parquet
from safetensors.torch import load_file
from tiny_models import finetuned_variant, save_model_folder, tiny_bert, tiny_tokenizer
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hfsoup.eval import load_split, resolve_task
from hfsoup.eval.scoring import Scorer

SPLITS = ("--selection-split", "validation[:24]", "--report-split", "validation[24:]")


def variants(root, num_labels: int, labels: tuple[str, ...] | None) -> list[str]:
    """Two "fine-tuned" variants of one tiny base with `num_labels` outputs named `labels` (in that order)."""
    base = tiny_bert(seed=0, num_labels=num_labels)
    folders = []
    for seed in (1, 2):
        model = finetuned_variant(base, seed)
        if labels:
            model.config.id2label = dict(enumerate(labels))
            model.config.label2id = {label: index for index, label in enumerate(labels)}
        folder = root / f"variant{seed}"
        folders.append(str(save_model_folder(model, tiny_tokenizer(folder), folder)))
    return folders


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    return {"reviews": sentiment_parquet(folder), "nli": nli_jsonl(folder), "ratings": ratings_csv(folder)}


@pytest.fixture(scope="module")
def sentiment_dirs(tmp_path_factory) -> list[str]:
    """Sentiment classifiers that name their labels `pos`, `neg`: the reverse of the dataset's `ClassLabel`."""
    return variants(tmp_path_factory.mktemp("sentiment"), 2, ("pos", "neg"))


@pytest.fixture(scope="module")
def nli_dirs(tmp_path_factory) -> list[str]:
    """NLI classifiers in snli's label order, which is not the sorted order of the dataset's string labels."""
    return variants(tmp_path_factory.mktemp("nli"), 3, NLI_LABELS)


def rescored(folder, dataset, text_columns, label_column=None) -> float:
    """The report score of a written soup, recomputed from its folder."""
    task = resolve_task(dataset=str(dataset), text_columns=text_columns, label_column=label_column)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    rows = load_split(task, SPLITS[3], dataset=str(dataset))
    return Scorer(model, AutoTokenizer.from_pretrained(folder), task, rows)()[0]["score"]


def test_sentiment_parquet_with_class_labels_aligns_the_heads_and_replays(
    tmp_path, capsys, data, sentiment_dirs
):
    out = tmp_path / "soup"
    args = [
        *sentiment_dirs,
        "--dataset",
        data["reviews"],
        "--text-column",
        "text",
        "--method",
        "uniform",
        *SPLITS,
    ]
    code, printed, err = run(capsys, "merge", *args, "--output-dir", out)
    assert code == 0, err
    assert "Task reviews; score = accuracy" in printed
    soup = yaml.safe_load((out / "soup.yaml").read_text())
    assert (soup["task"], soup["metric"], soup["labels"]) == ("reviews", "accuracy", ["neg", "pos"])
    assert soup["recipe"]["text_columns"] == ["text"] and "task" not in soup["recipe"]
    config = AutoModelForSequenceClassification.from_pretrained(out).config
    assert config.id2label == {0: "neg", 1: "pos"}
    # The ingredients' `neg` row is their row 1: the soup's row 0 is the mean of those rows.
    saved = load_file(out / "model.safetensors")["classifier.weight"]
    rows = [load_file(f"{folder}/model.safetensors")["classifier.weight"] for folder in sentiment_dirs]
    torch.testing.assert_close(saved, torch.stack([r[[1, 0]] for r in rows]).mean(0))
    score = rescored(out, data["reviews"], ["text"])
    assert score == pytest.approx(soup["results"]["soup"]["report"]["score"], abs=1e-6)
    card = (out / "README.md").read_text()
    assert "A *model soup* for `reviews` (reviews.parquet)" in card and "0 = neg, 1 = pos" in card
    again = tmp_path / "again"
    assert run(capsys, "merge", "--recipe", out / "soup.yaml", "--output-dir", again)[0] == 0
    assert torch.equal(load_file(again / "model.safetensors")["classifier.weight"], saved)


def test_sentence_pairs_with_string_labels_score_in_the_sorted_label_order(tmp_path, capsys, data, nli_dirs):
    out = tmp_path / "soup"
    args = [*nli_dirs, "--dataset", data["nli"], "--text-column", "premise", "hypothesis", *SPLITS]
    code, printed, err = run(capsys, "merge", *args, "--output-dir", out)
    assert code == 0, err
    assert "Task nli; score = accuracy" in printed and "greedy soup" in printed
    soup = yaml.safe_load((out / "soup.yaml").read_text())
    assert soup["labels"] == sorted(NLI_LABELS)
    config = AutoModelForSequenceClassification.from_pretrained(out).config
    assert list(config.id2label.values()) == ["contradiction", "entailment", "neutral"]
    score = rescored(out, data["nli"], ["premise", "hypothesis"])
    assert score == pytest.approx(soup["results"]["soup"]["report"]["score"], abs=1e-6)
    # Whichever ingredients the soup kept, its bias rows are theirs in the sorted order (2, 0, 1 of snli's).
    kept = [
        folder for folder, record in zip(nli_dirs, soup["ingredients"], strict=True) if record["selected"]
    ]
    biases = [load_file(f"{folder}/model.safetensors")["classifier.bias"][[2, 0, 1]] for folder in kept]
    torch.testing.assert_close(
        load_file(out / "model.safetensors")["classifier.bias"], torch.stack(biases).mean(0)
    )


def test_a_float_label_column_is_a_regression(tmp_path, capsys, data):
    models = variants(tmp_path, 1, None)
    out = tmp_path / "soup"
    args = [
        *models,
        "--dataset",
        data["ratings"],
        "--text-column",
        "sentence",
        "--label-column",
        "score",
        *SPLITS,
    ]
    code, printed, err = run(capsys, "merge", *args, "--output-dir", out)
    assert code == 0, err
    assert "Task ratings; score = mean of pearson and spearmanr" in printed
    soup = yaml.safe_load((out / "soup.yaml").read_text())
    assert soup["metric"] == "pearson_spearman" and set(soup["results"]["soup"]["report"]) == {
        "pearson",
        "spearmanr",
        "score",
    }
    score = rescored(out, data["ratings"], ["sentence"], "score")
    assert score == pytest.approx(soup["results"]["soup"]["report"]["score"], abs=1e-6)


def test_user_errors_are_one_line_and_write_nothing(tmp_path, capsys, data, sentiment_dirs):
    out = tmp_path / "soup"
    reviews = ["--dataset", data["reviews"], *SPLITS, "--output-dir", out]
    line = user_error(capsys, "merge", *sentiment_dirs, *reviews, "--text-column", "review")
    assert "['review']" in line and "text, label" in line
    line = user_error(capsys, "merge", *sentiment_dirs, *reviews)
    assert "needs --text-column" in line
    line = user_error(
        capsys, "merge", *sentiment_dirs, *reviews, "--text-column", "label", "--label-column", "text"
    )
    assert "the models output 2 logit(s) but label column 'text' of task reviews has 48 classes" in line
    nli = ["--dataset", data["nli"], "--text-column", "premise", "hypothesis", *SPLITS, "--output-dir", out]
    line = user_error(capsys, "merge", *sentiment_dirs, *nli)
    assert "has 3 classes (contradiction, entailment, neutral)" in line and "--label-column" in line
    assert not out.exists()

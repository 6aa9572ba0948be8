"""Tests of the Scorer: logits equal a plain forward pass, in dataset order, and metrics agree with sklearn."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, f1_score
from tiny_models import tiny_bert, tiny_tokenizer
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hfsoup.errors import DatasetError, InvalidSettingError, UnknownNameError
from hfsoup.eval import get_task, load_split, resolve_task
from hfsoup.eval.metrics import SHIPPED_METRICS, load_metric
from hfsoup.eval.scoring import Scorer, _UpperBound
from hfsoup.merge.precision import scoring_model

MRPC = get_task("mrpc")


@pytest.fixture(scope="module")
def mrpc_rows(glue_hub_dir):
    return load_split(MRPC, "validation[:24]", dataset=str(glue_hub_dir))


@pytest.fixture(scope="module")
def tiny_model(tiny_base_dir):
    return AutoModelForSequenceClassification.from_pretrained(tiny_base_dir).eval()


@pytest.fixture(scope="module")
def tokenizer(tiny_base_dir):
    return AutoTokenizer.from_pretrained(tiny_base_dir)


def plain_logits(model, tokenizer, task, rows) -> torch.Tensor:
    """One example at a time, no padding: the reference the Scorer must reproduce."""
    outputs = []
    with torch.no_grad():
        for row in rows:
            texts = [row[column] for column in task.text_columns]
            inputs = tokenizer(*texts, truncation=True, max_length=128, return_tensors="pt")
            outputs.append(model(**inputs).logits)
    return torch.cat(outputs)


def test_logits_equal_a_plain_forward_pass_in_dataset_order(tiny_model, tokenizer, mrpc_rows):
    logits = Scorer(tiny_model, tokenizer, MRPC, mrpc_rows, batch_size=8).logits()
    expected = plain_logits(tiny_model, tokenizer, MRPC, mrpc_rows)
    assert logits.shape == (24, 2) and logits.dtype == torch.float32
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-4)


def test_logits_do_not_depend_on_batch_size(tiny_model, tokenizer, mrpc_rows):
    one = Scorer(tiny_model, tokenizer, MRPC, mrpc_rows, batch_size=1).logits()
    for batch_size in (5, 64):
        other = Scorer(tiny_model, tokenizer, MRPC, mrpc_rows, batch_size=batch_size).logits()
        torch.testing.assert_close(other, one, atol=1e-5, rtol=1e-4)


def test_metrics_agree_with_sklearn_and_add_the_score(tiny_model, tokenizer, mrpc_rows):
    metrics, logits = Scorer(tiny_model, tokenizer, MRPC, mrpc_rows)()
    predictions, references = logits.argmax(-1).numpy(), np.array(mrpc_rows["label"][:])
    assert metrics["accuracy"] == pytest.approx(accuracy_score(references, predictions))
    assert metrics["f1"] == pytest.approx(f1_score(references, predictions))
    assert metrics["score"] == pytest.approx((metrics["accuracy"] + metrics["f1"]) / 2)


def test_scores_the_weights_now_in_the_model(tokenizer, tiny_ingredient_dirs, mrpc_rows):
    """One Scorer, many candidates: loading new weights changes the logits, as a fresh model would give."""
    model = AutoModelForSequenceClassification.from_pretrained(tiny_ingredient_dirs[0]).eval()
    scorer = Scorer(model, tokenizer, MRPC, mrpc_rows)
    first = scorer.logits()
    other = AutoModelForSequenceClassification.from_pretrained(tiny_ingredient_dirs[1]).eval()
    model.load_state_dict(other.state_dict())
    second = scorer.logits()
    assert not torch.allclose(first, second)
    torch.testing.assert_close(second, Scorer(other, tokenizer, MRPC, mrpc_rows).logits())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_low_precision_copy_scores_the_float32_weights_now_in_the_model(
    dtype, tokenizer, tiny_ingredient_dirs, mrpc_rows
):
    """bfloat16 and float16 run on the CPU: the copy gets the float32 model's current weights before each pass."""
    model = AutoModelForSequenceClassification.from_pretrained(tiny_ingredient_dirs[0]).eval()
    copy = scoring_model(model, dtype)
    scorer = Scorer(copy, tokenizer, MRPC, mrpc_rows, weights=model)
    other = AutoModelForSequenceClassification.from_pretrained(tiny_ingredient_dirs[1]).eval()
    model.load_state_dict(other.state_dict())
    logits = scorer.logits()
    assert logits.dtype == torch.float32 and next(copy.parameters()).dtype == dtype
    torch.testing.assert_close(
        logits, Scorer(other, tokenizer, MRPC, mrpc_rows).logits(), atol=0.02, rtol=0.05
    )
    # Exactly what the copy computes with the float32 weights rounded once to its dtype.
    torch.testing.assert_close(
        logits, Scorer(other.to(dtype), tokenizer, MRPC, mrpc_rows).logits(), atol=0, rtol=0
    )
    assert model.dtype == torch.float32  # the weights kept are untouched


def test_mean_of_logits_scores_an_ensemble(tokenizer, tiny_ingredient_dirs, mrpc_rows):
    models = [AutoModelForSequenceClassification.from_pretrained(d).eval() for d in tiny_ingredient_dirs]
    scorers = [Scorer(model, tokenizer, MRPC, mrpc_rows) for model in models]
    ensemble = torch.stack([scorer.logits() for scorer in scorers]).mean(0)
    metrics = scorers[0].metrics(ensemble)
    expected = accuracy_score(mrpc_rows["label"][:], ensemble.argmax(-1).numpy())
    assert metrics["accuracy"] == pytest.approx(expected)


def test_dropout_is_off_while_scoring_and_mode_is_restored(tiny_model, tokenizer, mrpc_rows):
    scorer = Scorer(tiny_model, tokenizer, MRPC, mrpc_rows)
    expected = scorer.logits()
    tiny_model.train()
    try:
        torch.testing.assert_close(scorer.logits(), expected)
        assert tiny_model.training
    finally:
        tiny_model.eval()


def test_regression_predicts_the_single_logit(tmp_path, glue_hub_dir):
    stsb = get_task("stsb")
    rows = load_split(stsb, "validation[:24]", dataset=str(glue_hub_dir))
    model, tokenizer = tiny_bert(seed=3, num_labels=1), tiny_tokenizer(tmp_path)
    metrics, logits = Scorer(model, tokenizer, stsb, rows, batch_size=16)()
    assert logits.shape == (24, 1)
    torch.testing.assert_close(logits, plain_logits(model, tokenizer, stsb, rows), atol=1e-5, rtol=1e-4)
    references = np.array(rows["label"][:])
    assert metrics["pearson"] == pytest.approx(pearsonr(logits[:, 0].numpy(), references)[0], abs=1e-5)
    assert metrics["score"] == pytest.approx((metrics["pearson"] + metrics["spearmanr"]) / 2)


def test_model_labels_in_another_order_are_reordered(tmp_path, mrpc_rows):
    model, tokenizer = tiny_bert(seed=4), tiny_tokenizer(tmp_path)
    model.config.id2label = {0: "equivalent", 1: "not_equivalent"}
    reordered = Scorer(model, tokenizer, MRPC, mrpc_rows).logits()
    model.config.id2label = {0: "LABEL_0", 1: "LABEL_1"}
    as_is = Scorer(model, tokenizer, MRPC, mrpc_rows).logits()
    torch.testing.assert_close(reordered, as_is.flip(1))


def test_metric_key_picks_another_key(tiny_model, tokenizer, mrpc_rows):
    metrics, _ = Scorer(tiny_model, tokenizer, MRPC, mrpc_rows, metric_key="f1")()
    assert metrics["score"] == metrics["f1"]


def test_unknown_metric_key_fails_before_scoring_and_lists_keys(tiny_model, tokenizer, mrpc_rows):
    with pytest.raises(UnknownNameError) as error:
        Scorer(tiny_model, tokenizer, MRPC, mrpc_rows, metric_key="precision")
    message = str(error.value)
    assert "\n" not in message and "'precision'" in message and "accuracy, f1" in message


def test_model_with_the_wrong_number_of_labels_is_refused(tmp_path, mrpc_rows):
    with pytest.raises(InvalidSettingError, match="3 logits"):
        Scorer(tiny_bert(num_labels=3), tiny_tokenizer(tmp_path), MRPC, mrpc_rows)


def test_bad_settings_and_empty_dataset_are_refused(tiny_model, tokenizer, mrpc_rows):
    with pytest.raises(InvalidSettingError, match="batch_size"):
        Scorer(tiny_model, tokenizer, MRPC, mrpc_rows, batch_size=0)
    with pytest.raises(DatasetError, match="no rows"):
        Scorer(tiny_model, tokenizer, MRPC, mrpc_rows.select([]))


# --- early stopping: score(beat=x) is None only when the full score is <= x ----------------------------------


def test_upper_bound_holds_after_every_batch_and_is_the_score_at_the_end():
    generator = np.random.default_rng(0)
    glue = load_metric(MRPC)
    for keys in [("accuracy",), ("f1",), ("f1", "accuracy")]:
        for _ in range(30):
            references = generator.integers(0, 2, 20)
            predictions = np.where(generator.random(20) < 0.7, references, 1 - references)
            metrics = glue.compute(predictions=predictions, references=references)
            final = sum(metrics[key] for key in keys) / len(keys)
            bound = _UpperBound(keys, references)
            order = generator.permutation(20)
            for start in range(0, 20, 6):
                rows = order[start : start + 6]
                value = bound.add(predictions[rows], rows)
                assert value >= final - 1e-12
            assert value == pytest.approx(final, abs=1e-12)  # every row counted: the bound is the score


@pytest.fixture(scope="module")
def split_model(tiny_base_dir):
    """A tiny classifier with a loud random head, so its predictions split between both classes."""
    model = AutoModelForSequenceClassification.from_pretrained(tiny_base_dir).eval()
    with torch.no_grad():
        model.classifier.weight.normal_(0, 3.0, generator=torch.Generator().manual_seed(5))
    return model


@pytest.mark.parametrize("metric_key", [None, "accuracy", "f1"])
def test_score_with_beat_is_exact(split_model, tokenizer, mrpc_rows, metric_key):
    scorer = Scorer(split_model, tokenizer, MRPC, mrpc_rows, metric_key=metric_key, batch_size=4)
    rows = []  # the rows of each forward pass
    hook = split_model.register_forward_pre_hook(
        lambda _m, _args, kwargs: rows.append(len(kwargs["input_ids"])), with_kwargs=True
    )
    try:
        full = scorer.score()
        assert scorer.has_bound and 0 < scorer.metrics(scorer.logits())["accuracy"] < 1
        assert full == scorer()[0]["score"]
        stopped_early = False
        for beat in [
            0.0,
            full - 0.05,
            math.nextafter(full, -1),
            full,
            math.nextafter(full, 2),
            full + 0.05,
            1.0,
        ]:
            rows.clear()
            value = scorer.score(beat=beat)
            if value is None:
                assert full <= beat
                stopped_early |= sum(rows) < len(mrpc_rows)
            else:
                assert value == full and sum(rows) == len(mrpc_rows)
            if beat < full:
                assert value == full
        assert stopped_early
    finally:
        hook.remove()


def test_the_shipped_accuracy_of_a_dataset_task_stops_early_and_exactly(tmp_path, split_model, tokenizer):
    """A task defined by a dataset's columns scores with the shipped `accuracy` module, which has a bound."""
    from dataset_files import sentiment_parquet

    data = sentiment_parquet(tmp_path, rows=40)
    task = resolve_task(dataset=str(data), text_columns=["text"])
    rows = load_split(task, "train", dataset=str(data))
    scorer = Scorer(split_model, tokenizer, task, rows, batch_size=4)
    assert scorer.has_bound
    passes = []
    hook = split_model.register_forward_pre_hook(
        lambda _m, _args, kwargs: passes.append(len(kwargs["input_ids"])), with_kwargs=True
    )
    try:
        full = scorer.score()
        assert 0 < full < 1 and full == accuracy_score(rows["label"], scorer.logits().argmax(-1).numpy())
        for beat in (full - 0.1, math.nextafter(full, -1)):
            assert scorer.score(beat=beat) == full
        passes.clear()
        assert scorer.score(beat=1.0) is None and sum(passes) < len(rows)  # stopped before the last batch
    finally:
        hook.remove()


def test_scores_without_a_known_bound_always_run_to_the_end(
    tmp_path, tiny_model, tokenizer, mrpc_rows, glue_hub_dir
):
    cola = get_task("cola")
    cola_rows = load_split(cola, "validation[:16]", dataset=str(glue_hub_dir))
    matthews = Scorer(tiny_model, tokenizer, cola, cola_rows)
    assert not matthews.has_bound and matthews.score(beat=2.0) == matthews.score()
    # A local metric module, even a near copy of the shipped one, is not trusted to compute accuracy.
    local = tmp_path / "myglue.py"
    local.write_text(SHIPPED_METRICS["glue"].joinpath("glue.py").read_text() + "\n# a local copy\n")
    own = Scorer(tiny_model, tokenizer, MRPC, mrpc_rows, metric=str(local), metric_key="accuracy")
    assert not own.has_bound and own.score(beat=2.0) == own.score()
    assert Scorer(tiny_model, tokenizer, MRPC, mrpc_rows, metric_key="accuracy").has_bound


@pytest.mark.slow
def test_minilm_on_full_mrpc_validation_costs_one_forward_pass(minilm_dir, glue_hub_dir):
    rows = load_split(MRPC, "validation", dataset=str(glue_hub_dir))
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_dir, num_labels=2).eval()
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    scorer = Scorer(model, tokenizer, MRPC, rows)
    metrics, logits = scorer()
    assert logits.shape == (408, 2) and len(scorer) == 408
    assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["f1"] <= 1
    sample = rows.select(range(0, 408, 51))
    torch.testing.assert_close(
        logits[::51], plain_logits(model, tokenizer, MRPC, sample), atol=1e-4, rtol=1e-4
    )

    # The same padded batches through the model, nothing else: the cost floor of scoring this split.
    inputs = [batch for _, batch in scorer._batches]

    def bare_forward():
        with torch.inference_mode():
            for batch in inputs:
                model(**batch)

    scorer_times, bare_times = [], []
    for _ in range(3):  # interleaved, best of three: robust to other load on the machine
        start = time.perf_counter()
        scorer()
        scorer_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        bare_forward()
        bare_times.append(time.perf_counter() - start)
    assert min(scorer_times) <= 1.2 * min(bare_times)

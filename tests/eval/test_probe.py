"""Tests of hfsoup.eval.probe: the features a head's projection sees, and fits that agree with scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from tiny_models import tiny_bert, tiny_tokenizer

from hfsoup.eval import get_task, load_split
from hfsoup.eval.probe import fit_projection, head_features, probe_head

L2 = 1e-2


def standardized(features: torch.Tensor) -> np.ndarray:
    x = features.double()
    return ((x - x.mean(0)) / x.std(0)).numpy()


@pytest.fixture(scope="module")
def mrpc_features(tmp_path_factory, glue_hub_dir):
    folder = tmp_path_factory.mktemp("tokenizer")
    task = get_task("mrpc")
    rows = load_split(task, "train[:300]", dataset=str(glue_hub_dir))
    features = head_features(
        tiny_bert(seed=0), "classifier", tiny_tokenizer(folder), task, rows, max_length=32
    )
    return features, torch.as_tensor(rows["label"])


def test_the_features_are_the_projection_s_input(mrpc_features, tmp_path, glue_hub_dir):
    features, _ = mrpc_features
    model = tiny_bert(seed=0)
    task = get_task("mrpc")
    rows = load_split(task, "train[:300]", dataset=str(glue_hub_dir))
    assert features.shape == (300, model.config.hidden_size)
    pooled = model.bert(
        **tiny_tokenizer(tmp_path)(
            rows["sentence1"][:3],
            rows["sentence2"][:3],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=32,
        )
    ).pooler_output
    torch.testing.assert_close(features[:3], pooled.detach(), atol=1e-5, rtol=1e-4)


def test_a_binary_probe_agrees_with_scikit_learn_on_90_percent_of_the_rows(mrpc_features):
    features, labels = mrpc_features
    weight, bias = fit_projection(features, labels, 2, l2=L2)
    ours = (features @ weight.T + bias).argmax(1).numpy()
    # The same objective: sum loss + |W|^2 / (2C) with C = 1 / (l2 * rows), on standardized features.
    reference = LogisticRegression(C=1 / (L2 * len(labels)), max_iter=5000).fit(
        standardized(features), labels
    )
    theirs = reference.predict(standardized(features))
    assert (ours == theirs).mean() >= 0.9
    assert torch.equal(weight, fit_projection(features, labels, 2, l2=L2)[0])  # deterministic


def test_a_softmax_probe_agrees_with_scikit_learn(mrpc_features):
    features, _ = mrpc_features
    labels = torch.as_tensor((features[:, 0] > features[:, 0].median()).long() + (features[:, 1] > 0).long())
    weight, bias = fit_projection(features, labels, 3, l2=L2)
    assert weight.shape == (3, features.shape[1])
    ours = (features @ weight.T + bias).argmax(1).numpy()
    reference = LogisticRegression(C=1 / (L2 * len(labels)), max_iter=5000).fit(
        standardized(features), labels
    )
    assert (ours == reference.predict(standardized(features))).mean() >= 0.9


def test_a_regression_probe_is_ridge(mrpc_features):
    features, _ = mrpc_features
    target = features[:, :5].sum(1).double() + 0.1 * torch.randn(
        len(features), generator=torch.Generator().manual_seed(0)
    )
    weight, bias = fit_projection(features, target, 1, l2=L2)
    ours = (features.double() @ weight.double().T + bias.double())[:, 0].numpy()
    reference = Ridge(alpha=L2 * len(target)).fit(standardized(features), target.numpy())
    np.testing.assert_allclose(ours, reference.predict(standardized(features)), rtol=1e-3, atol=1e-3)


def test_the_probe_s_training_score_is_the_task_s_metric(mrpc_features):
    features, labels = mrpc_features
    probe = probe_head(features, labels, get_task("mrpc"), l2=L2)
    accuracy = float((probe.logits(features).argmax(1) == labels).double().mean())
    assert probe.train["accuracy"] == pytest.approx(accuracy) and probe.rows == 300
    assert probe.train["score"] == pytest.approx((probe.train["accuracy"] + probe.train["f1"]) / 2)

"""Tests of SelectionLoss: seeded batches cover every row, the loss and gradient equal a plain computation."""

from __future__ import annotations

import pytest
import torch
from tiny_models import tiny_bert, tiny_tokenizer

from hfsoup.errors import DatasetError, InvalidSettingError
from hfsoup.eval import get_task, load_split
from hfsoup.eval.loss import SelectionLoss

MRPC = get_task("mrpc")


@pytest.fixture(scope="module")
def mrpc_rows(glue_hub_dir):
    return load_split(MRPC, "validation[:20]", dataset=str(glue_hub_dir))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def plain_loss(model, tokenizer, task, rows, indices, loss_function):
    """The loss summed one row at a time (no padding) and averaged, with autograd: the reference."""
    model.zero_grad(set_to_none=True)
    total = 0
    for index in indices:
        row = rows[int(index)]
        inputs = tokenizer(*[row[c] for c in task.text_columns], truncation=True, return_tensors="pt")
        logits = model(**inputs).logits
        total = total + loss_function(logits, row[task.label_column])
    loss = total / len(indices)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return loss.item(), grads


def test_each_epoch_visits_every_row_once_in_a_seeded_order(tokenizer, mrpc_rows):
    loss = SelectionLoss(tiny_bert(), tokenizer, MRPC, mrpc_rows, batch_size=8, seed=4)
    assert len(loss) == 3
    epochs = [[loss.rows(epoch, batch) for batch in range(3)] for epoch in range(2)]
    for batches in epochs:
        assert [len(rows) for rows in batches] == [7, 7, 6]
        assert sorted(int(row) for rows in batches for row in rows) == list(range(20))
    assert any((a != b).any() for a, b in zip(*epochs, strict=True))  # another shuffle each epoch
    again = SelectionLoss(tiny_bert(), tokenizer, MRPC, mrpc_rows, batch_size=8, seed=4)
    assert all((again.rows(1, b) == epochs[1][b]).all() for b in range(3))
    other = SelectionLoss(tiny_bert(), tokenizer, MRPC, mrpc_rows, batch_size=8, seed=5)
    assert (other.rows(0, 0) != epochs[0][0]).any()


def test_cross_entropy_and_its_gradient_equal_a_plain_computation(tokenizer, mrpc_rows):
    model = tiny_bert(seed=2)
    model.train()  # dropout (0.1) would change the loss: each call runs in eval mode
    loss = SelectionLoss(model, tokenizer, MRPC, mrpc_rows, batch_size=8, seed=1)
    value, grads = loss(1, 2)
    assert model.training  # the mode is restored
    assert all(p.grad is None for p in model.parameters())  # the gradients were handed over, not kept
    model.eval()
    expected, expected_grads = plain_loss(
        model,
        tokenizer,
        MRPC,
        mrpc_rows,
        loss.rows(1, 2),
        lambda logits, label: torch.nn.functional.cross_entropy(logits, torch.tensor([label])),
    )
    assert value == pytest.approx(expected, rel=1e-5)
    assert set(grads) == {name for name, _ in model.named_parameters()}
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_labels_in_another_order_are_reordered_before_the_loss(tokenizer, mrpc_rows):
    model = tiny_bert(seed=4)
    as_is, _ = SelectionLoss(model, tokenizer, MRPC, mrpc_rows)(0, 0)
    model.config.id2label = {0: "equivalent", 1: "not_equivalent"}
    reordered, _ = SelectionLoss(model, tokenizer, MRPC, mrpc_rows)(0, 0)
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight.flip(0))
        model.classifier.bias.copy_(model.classifier.bias.flip(0))
    assert reordered != pytest.approx(as_is)
    assert SelectionLoss(model, tokenizer, MRPC, mrpc_rows)(0, 0)[0] == pytest.approx(as_is, rel=1e-6)


def test_regression_uses_the_mean_squared_error(tokenizer, glue_hub_dir):
    stsb = get_task("stsb")
    rows = load_split(stsb, "validation[:12]", dataset=str(glue_hub_dir))
    model = tiny_bert(seed=3, num_labels=1)
    value, _ = SelectionLoss(model, tokenizer, stsb, rows, batch_size=12)(0, 0)
    expected, _ = plain_loss(
        model,
        tokenizer,
        stsb,
        rows,
        range(12),
        lambda logits, label: (logits[0, 0] - label) ** 2,
    )
    assert value == pytest.approx(expected, rel=1e-5)


def test_bad_settings_and_empty_dataset_are_refused(tokenizer, mrpc_rows):
    with pytest.raises(InvalidSettingError, match="batch_size"):
        SelectionLoss(tiny_bert(), tokenizer, MRPC, mrpc_rows, batch_size=0)
    with pytest.raises(InvalidSettingError, match="3 logits"):
        SelectionLoss(tiny_bert(num_labels=3), tokenizer, MRPC, mrpc_rows)
    with pytest.raises(DatasetError, match="no rows"):
        SelectionLoss(tiny_bert(), tokenizer, MRPC, mrpc_rows.select([]))

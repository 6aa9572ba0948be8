"""The task loss of the weights inside a model on batches of one split, and its gradient: what a learned soup fits.

A [`SelectionLoss`] tokenizes its split once; each call takes one batch of a seeded shuffle of the rows, runs the
model forward and backward in eval mode (no dropout, so a call is a function of the weights and the batch), and
hands back the loss and the gradient of every trainable tensor, taken out of the model so that it keeps none.
"""

from __future__ import annotations

import math

import datasets
import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from ..errors import DatasetError, InvalidSettingError
from .scoring import _label_order
from .tasks import Task

__all__ = ["SelectionLoss"]


class SelectionLoss:
    """Cross-entropy (mean squared error for a regression task such as STS-B) of the weights now in `model`.

    Args:
        model: a sequence-classification model; it is put in eval mode for each call and its mode restored.
        tokenizer: the tokenizer of the model.
        task: the task, which names the text and label columns.
        dataset: the split, e.g. the selection split from [`load_split`]; its rows are tokenized here, once.
        batch_size: the most rows per batch; an epoch has `ceil(rows / batch_size)` batches of near-equal size.
        max_length: longest tokenized input; longer ones are truncated.
        seed: the seed of the shuffles: epoch `e` visits the rows in the order of a permutation seeded with
            `(seed, e)`, so every batch is a function of `(seed, epoch, batch)` alone.

    Raises:
        [`InvalidSettingError`]: `batch_size` or `max_length` is below 1, or the model's number of labels is
            not the task's.
        [`DatasetError`]: `dataset` has no rows.

    Example:

    ```python
    >>> loss = SelectionLoss(model, tokenizer, get_task("mrpc"), load_split(get_task("mrpc"), "selection"))
    >>> len(loss)  # batches per epoch
    4
    >>> value, grads = loss(epoch=0, batch=0)
    >>> grads["classifier.weight"].shape
    torch.Size([2, 384])
    ```
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        task: Task,
        dataset: datasets.Dataset,
        *,
        batch_size: int = 64,
        max_length: int = 128,
        seed: int = 0,
        processes=None,
    ):
        if batch_size < 1 or max_length < 1:
            raise InvalidSettingError(
                f"batch_size and max_length must be at least 1, got {batch_size} and {max_length}"
            )
        if model.config.num_labels != task.num_labels:
            raise InvalidSettingError(
                f"the model outputs {model.config.num_labels} logits but task {task.name} needs "
                f"{task.num_labels}; pick the task the model was fine-tuned on"
            )
        if len(dataset) == 0:
            raise DatasetError(f"the dataset to fit task {task.name} on has no rows")
        self.model = model
        self.task = task
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.seed = seed
        self.processes = processes  # launched processes (hfsoup.processes.Processes) share each batch's rows
        self._label_order = _label_order(model.config.id2label, task)
        texts = [dataset[column][:] for column in task.text_columns]
        self._encodings = dict(tokenizer(*texts, truncation=True, max_length=max_length))
        labels = np.asarray(dataset.with_format("numpy")[task.label_column][:])
        self._labels = torch.from_numpy(labels.astype(np.float32 if task.is_regression else np.int64))

    def __len__(self) -> int:
        """Batches per epoch."""
        return math.ceil(len(self._labels) / self.batch_size)

    def rows(self, epoch: int, batch: int) -> np.ndarray:
        """The row indices of one batch of one epoch: the epoch's permutation cut into `len(self)` near-equal
        batches (sizes differ by at most one), so every batch weighs alike in a mean of batch losses."""
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self._labels))
        return np.array_split(order, len(self))[batch]

    def __call__(self, epoch: int, batch: int) -> tuple[float, dict[str, torch.Tensor]]:
        """The mean loss of one batch and its gradient of each trainable tensor of the model, by name.

        The gradients are taken out of the model (its parameters' `.grad` are `None` afterwards).
        """
        rows = self.rows(epoch, batch)
        count = 1 if self.processes is None else self.processes.count
        if count == 1:
            loss, grads = self._loss_and_grads(rows, "mean")
            return float(loss), grads
        # Launched processes: each takes every count-th row of the batch, and the sums of their per-row losses
        # and gradients are added up across processes, then divided by the batch's rows: the batch's mean, the
        # same as one process up to the order of the additions.
        loss, grads = self._loss_and_grads(rows[self.processes.index :: count], "sum")
        trainable = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        grads = {
            name: grads.get(name, torch.zeros_like(p)) for name, p in trainable
        }  # the same sums everywhere
        total = self.processes.reduce(torch.tensor([loss], dtype=torch.float64), "sum")
        for name, grad in grads.items():
            grads[name] = self.processes.reduce(grad, "sum") / len(rows)
        return float(total[0]) / len(rows), grads

    def _loss_and_grads(self, rows: np.ndarray, reduction: str) -> tuple[float, dict[str, torch.Tensor]]:
        """The loss of `rows` (their mean or sum) and its gradient of each trainable tensor, by name."""
        parameters = dict(self.model.named_parameters())
        if len(rows) == 0:  # a process with no row of this batch still takes part in the sums
            trainable = {n: p for n, p in parameters.items() if p.requires_grad}
            return 0.0, {name: torch.zeros_like(p) for name, p in trainable.items()}
        features = {name: [values[row] for row in rows] for name, values in self._encodings.items()}
        inputs = self.tokenizer.pad(features, return_tensors="pt")
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        try:
            for parameter in parameters.values():
                parameter.grad = None
            with torch.enable_grad():
                logits = self.model(**{name: t.to(device) for name, t in inputs.items()}).logits.float()
                if self._label_order is not None:
                    logits = logits[:, self._label_order]
                labels = self._labels[rows].to(device)
                if self.task.is_regression:
                    loss = torch.nn.functional.mse_loss(logits[:, 0], labels, reduction=reduction)
                else:
                    loss = torch.nn.functional.cross_entropy(logits, labels, reduction=reduction)
                loss.backward()
            grads = {}
            for name, parameter in parameters.items():
                if parameter.grad is not None:
                    grads[name], parameter.grad = parameter.grad, None
        finally:
            self.model.train(was_training)
        return float(loss.detach()), grads

"""Score the weights inside a model on one split: tokenize once, batch by length, compute `evaluate` metrics.

A [`Scorer`] is built once per split and called once per candidate set of weights (each ingredient, each
greedy-soup candidate). All the work that does not depend on the weights -- tokenizing, sorting by length,
padding each batch, loading the metric -- happens in the constructor, so a call costs one forward pass over
the split plus one metric computation.

Logits come back in dataset order and in the task's label order, so a caller can keep each ingredient's
logits and score their mean (the logit ensemble) with [`Scorer.metrics`].
"""

from __future__ import annotations

import dataclasses
import logging
import re

import datasets
import evaluate
import numpy as np
import torch
from huggingface_hub.utils import tqdm
from transformers import PreTrainedTokenizerBase

from ..errors import DatasetError, InvalidSettingError
from .metrics import load_metric
from .tasks import Task

logger = logging.getLogger(__name__)


class Scorer:
    """Scores whatever weights are currently inside `model` on one split of a task.

    Args:
        model: a sequence-classification model (`AutoModelForSequenceClassification`); it is put in eval mode
            while scoring and its previous mode restored.
        tokenizer: the tokenizer of the model.
        task: the task, which names the text and label columns and the metric.
        dataset: the split to score on, e.g. from [`load_split`]; its rows are tokenized here, once.
        metric: an `evaluate` module, or its name or path (see [`load_metric`]); defaults to the task's.
        metric_key: the key of the metric's output used as `"score"`; defaults to the task's leaderboard score.
        batch_size: rows per forward pass.
        max_length: longest tokenized input; longer ones are truncated.
        progress: show a progress bar over the batches of each call.

    Raises:
        [`InvalidSettingError`]: `batch_size` or `max_length` is below 1, or the model's number of labels is
            not the task's.
        [`UnknownNameError`]: `metric` cannot be loaded, or `metric_key` is not in its output (the message
            lists the valid keys).
        [`DatasetError`]: `dataset` has no rows.

    Example:

    ```python
    >>> scorer = Scorer(model, tokenizer, get_task("mrpc"), load_split(get_task("mrpc"), "selection"))
    >>> metrics, logits = scorer()
    >>> metrics["score"]  # mean of F1 and accuracy
    0.83...
    ```
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        task: Task,
        dataset: datasets.Dataset,
        *,
        metric: str | evaluate.EvaluationModule | None = None,
        metric_key: str | None = None,
        batch_size: int = 64,
        max_length: int = 128,
        progress: bool = False,
    ):
        if batch_size < 1 or max_length < 1:
            raise InvalidSettingError(
                f"batch_size and max_length must be at least 1, got {batch_size} and {max_length}"
            )
        num_labels = model.config.num_labels
        if num_labels != task.num_labels:
            raise InvalidSettingError(
                f"the model outputs {num_labels} logits but task {task.name} needs {task.num_labels}; "
                "pick the task the model was fine-tuned on"
            )
        if len(dataset) == 0:
            raise DatasetError(f"the dataset to score task {task.name} on has no rows")
        self.model = model
        self.task = task if metric_key is None else dataclasses.replace(task, selection_key=metric_key)
        self.progress = progress
        self._metric = metric if isinstance(metric, evaluate.EvaluationModule) else load_metric(task, metric)
        self._label_order = _label_order(model.config.id2label, task)
        labels = dataset.with_format("numpy")[task.label_column][:]
        self._references = labels.astype(np.float32 if task.is_regression else np.int64)
        self._batches = _tokenize(tokenizer, dataset, task.text_columns, batch_size, max_length)
        # Score perfect logits once, so a bad metric or metric_key fails now rather than after a forward pass.
        self.metrics(_perfect_logits(self._references, task.num_labels))

    def __len__(self) -> int:
        return len(self._references)

    def logits(self) -> torch.Tensor:
        """The float32 logits of the weights now in the model, shape (rows, labels), in dataset order."""
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        logits = torch.empty(len(self), self.task.num_labels)
        with torch.inference_mode():
            for rows, batch in tqdm(
                self._batches, desc=f"Scoring {self.task.name}", disable=not self.progress
            ):
                output = self.model(**{name: tensor.to(device) for name, tensor in batch.items()})
                logits[rows] = output.logits.float().cpu()
        self.model.train(was_training)
        return logits if self._label_order is None else logits[:, self._label_order]

    def metrics(self, logits: torch.Tensor) -> dict[str, float]:
        """The metric's output for `logits` (of the model, or e.g. a mean of several models'), plus `"score"`.

        Classification predicts the argmax; regression (STS-B) predicts the single logit.
        """
        predictions = logits[:, 0] if self.task.is_regression else logits.argmax(dim=-1)
        result = self._metric.compute(predictions=predictions.numpy(), references=self._references)
        result = {key: float(value) for key, value in result.items()}
        result["score"] = self.task.leaderboard_score(result)
        return result

    def __call__(self) -> tuple[dict[str, float], torch.Tensor]:
        """The metrics and the logits of the weights now in the model."""
        logits = self.logits()
        return self.metrics(logits), logits


def _tokenize(
    tokenizer: PreTrainedTokenizerBase,
    dataset: datasets.Dataset,
    columns: tuple[str, ...],
    batch_size: int,
    max_length: int,
) -> list[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """Tokenize every row once and pad batches of similar length: a list of (row indices, model inputs)."""
    texts = [dataset[column][:] for column in columns]
    encodings = tokenizer(*texts, truncation=True, max_length=max_length)
    lengths = np.array([len(ids) for ids in encodings["input_ids"]])
    order = np.argsort(-lengths, kind="stable")
    batches = []
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        features = {name: [values[row] for row in rows] for name, values in encodings.items()}
        batches.append((torch.from_numpy(rows), dict(tokenizer.pad(features, return_tensors="pt"))))
    return batches


def _label_order(id2label: dict[int, str], task: Task) -> list[int] | None:
    """The logit columns in the task's label order, when the model names the same labels in another order."""
    if task.is_regression:
        return None
    names = [str(id2label.get(index, "")).lower() for index in range(task.num_labels)]
    wanted = [name.lower() for name in task.label_names]
    if names == wanted:
        return None
    if sorted(names) == sorted(wanted):
        logger.info("Reordering the model's labels %s to the order of task %s: %s", names, task.name, wanted)
        return [names.index(name) for name in wanted]
    if not all(re.fullmatch(r"label_\d+", name) for name in names):
        logger.warning(
            "The model's labels %s are not those of task %s %s; assuming label ids follow the task",
            names,
            task.name,
            wanted,
        )
    return None


def _perfect_logits(references: np.ndarray, num_labels: int) -> torch.Tensor:
    """Logits whose predictions equal `references`."""
    if num_labels == 1:
        return torch.from_numpy(references).float()[:, None]
    return torch.nn.functional.one_hot(torch.from_numpy(references), num_labels).float()

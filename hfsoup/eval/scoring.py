"""Score the weights inside a model on one split: tokenize once, batch by length, compute `evaluate` metrics.

A [`Scorer`] is built once per split and called once per candidate set of weights (each ingredient, each
greedy-soup candidate). All the work that does not depend on the weights -- tokenizing, sorting by length,
padding each batch, loading the metric -- happens in the constructor, so a call costs one forward pass over
the split plus one metric computation.

Logits come back in dataset order and in the task's label order, so a caller can keep each ingredient's
logits and score their mean (the logit ensemble) with [`Scorer.metrics`].

[`Scorer.score`] can stop a pass early, exactly: when the selection score is accuracy, binary F1 or their
mean, as the shipped GLUE and accuracy metrics compute them, each batch bounds the best score the pass can still reach.

A Scorer may score in another dtype than the weights are kept in (`weights`: a float32 model whose weights
are copied into the scoring model before each pass), and split each pass between the processes a launcher
started (`processes`, see `hfsoup/processes.py`): each process runs its share of the batches, the logits are
gathered after every round of batches, and every process ends a pass with the same logits as one process.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import re
from collections.abc import Callable
from pathlib import Path

import datasets
import evaluate
import numpy as np
import torch
from huggingface_hub.utils import tqdm
from transformers import PreTrainedTokenizerBase

from ..errors import DatasetError, InvalidSettingError
from .metrics import SHIPPED_METRICS, load_metric
from .processes import Processes
from .tasks import MeanOf, Task

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
        weights: the model whose weights are scored, when `model` is a copy of it in another dtype (see
            `hfsoup.precision.scoring_model`): its tensors are copied into `model` before each pass. `None`
            scores the weights in `model`.
        processes: the processes to split each pass between (see [`Processes`]); `None` for this one alone.

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
        weights: torch.nn.Module | None = None,
        processes: Processes | None = None,
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
        self._processes = processes or Processes()
        held = weights.state_dict() if weights is not None and weights is not model else None
        self._copies = [(tensor, held[name]) for name, tensor in model.state_dict().items()] if held else []
        self._metric = metric if isinstance(metric, evaluate.EvaluationModule) else load_metric(task, metric)
        self._label_order = _label_order(model.config.id2label, task)
        labels = dataset.with_format("numpy")[task.label_column][:]
        self._references = labels.astype(np.float32 if task.is_regression else np.int64)
        self._batches = tokenize_batches(tokenizer, dataset, task.text_columns, batch_size, max_length)
        # Score perfect logits once, so a bad metric or metric_key fails now rather than after a forward pass.
        self.metrics(_perfect_logits(self._references, task.num_labels))
        self._bound_keys = _bound_keys(self.task, self._metric)

    def __len__(self) -> int:
        return len(self._references)

    @property
    def references(self) -> np.ndarray:
        """The split's labels, in dataset order (class ids, or floats for a regression)."""
        return self._references

    @property
    def computes_shipped_metric(self) -> bool:
        """Whether the metric is hfsoup's shipped GLUE, accuracy or Pearson-Spearman code, whose keys are known."""
        return _is_shipped(self._metric, ("glue", "accuracy", "pearson_spearman"))

    @property
    def has_bound(self) -> bool:
        """Whether [`score`] can stop early: the score is accuracy, binary F1 or their mean, of the shipped metric.

        Matthews correlation (CoLA), the correlations of STS-B and any metric not shipped with hfsoup have no
        bound here: their passes always run to the end.
        """
        return self._bound_keys is not None

    def logits(self) -> torch.Tensor:
        """The float32 logits of the weights now in the model, shape (rows, labels), in dataset order."""
        return self._run()

    def _run(self, stop: Callable[[torch.Tensor, torch.Tensor], bool] | None = None) -> torch.Tensor | None:
        """The logits in the task's label order, or `None` as soon as `stop(rows, batch_logits)` is true.

        The batches run in rounds of one per process; after each round every process holds the round's
        logits, and calls `stop` on each batch in batch order, so all processes stop after the same round.
        """
        device = next(self.model.parameters()).device
        if self._copies:
            with torch.no_grad():
                for scored, kept in self._copies:
                    scored.copy_(kept)
        was_training = self.model.training
        self.model.eval()
        logits = torch.empty(len(self), self.task.num_labels)
        processes, batches = self._processes, self._batches
        try:
            with torch.inference_mode():
                for start in tqdm(
                    range(0, len(batches), processes.count),
                    desc=f"Scoring {self.task.name}",
                    disable=not self.progress,
                ):
                    group = batches[start : start + processes.count]
                    if processes.index < len(group):
                        inputs = group[processes.index][1]
                        output = self.model(**{name: tensor.to(device) for name, tensor in inputs.items()})
                        mine = output.logits.float()
                    else:
                        mine = torch.empty(0, self.task.num_labels, device=device)
                    gathered = processes.gather(mine, [len(rows) for rows, _ in group])
                    for (rows, _), batch_logits in zip(group, gathered, strict=True):
                        batch_logits = batch_logits.cpu()
                        if self._label_order is not None:
                            batch_logits = batch_logits[:, self._label_order]
                        logits[rows] = batch_logits
                        if stop is not None and stop(rows, batch_logits):
                            return None
        finally:
            self.model.train(was_training)
        return logits

    def score(self, beat: float | None = None) -> float | None:
        """The selection score (`"score"`) of the weights now in the model, or `None` if it cannot exceed `beat`.

        With `beat` and a bound (see [`has_bound`]), the pass stops after the first batch that proves the score
        `<= beat`: the rows left are counted as predicted right, which bounds accuracy and F1 from above. The
        bound must stay `1e-9` below `beat`, far above float rounding, so `None` means the full score is
        `<= beat`, never a score that would have won. Without a bound, or without `beat`, it is the full score.

        Example:

        ```python
        >>> scorer.score()
        0.8125
        >>> scorer.score(beat=0.9) is None  # this pass stopped early: it could not have beaten 0.9
        True
        ```
        """
        if beat is None or self._bound_keys is None:
            return self.metrics(self.logits())["score"]
        bound = _UpperBound(self._bound_keys, self._references)

        def stop(rows: torch.Tensor, batch_logits: torch.Tensor) -> bool:
            return bound.add(batch_logits.argmax(dim=-1).numpy(), rows.numpy()) <= beat - _BOUND_MARGIN

        logits = self._run(stop)
        return None if logits is None else self.metrics(logits)["score"]

    def metrics(self, logits: torch.Tensor, rows: np.ndarray | None = None) -> dict[str, float]:
        """The metric's output for `logits` (of the model, or e.g. a mean of several models'), plus `"score"`.

        Classification predicts the argmax; regression (STS-B) predicts the single logit. With `rows` (indices
        into the split, e.g. a bootstrap resample), `logits` are those rows' and are scored against their labels.
        """
        predictions = logits[:, 0] if self.task.is_regression else logits.argmax(dim=-1)
        references = self._references if rows is None else self._references[rows]
        result = self._metric.compute(predictions=predictions.numpy(), references=references)
        result = {key: float(value) for key, value in result.items()}
        result["score"] = self.task.leaderboard_score(result)
        return result

    def __call__(self) -> tuple[dict[str, float], torch.Tensor]:
        """The metrics and the logits of the weights now in the model."""
        logits = self.logits()
        return self.metrics(logits), logits


def tokenize_batches(
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


_BOUND_MARGIN = 1e-9  # how far below `beat` a bound must be: float rounding of a score is about 1e-16


def _bound_keys(task: Task, metric: evaluate.EvaluationModule) -> tuple[str, ...] | None:
    """The metric keys averaged into the selection score, if [`_UpperBound`] bounds each; `None` otherwise."""
    key = task.selection_key
    keys = (key,) if isinstance(key, str) else key.keys if isinstance(key, MeanOf) else ()
    allowed = {"accuracy", "f1"} if task.num_labels == 2 else {"accuracy"}
    if task.is_regression or not keys or not set(keys) <= allowed or not _is_shipped_classification(metric):
        return None
    return tuple(keys)


def _is_shipped_classification(metric: evaluate.EvaluationModule) -> bool:
    """Whether `metric` runs hfsoup's own GLUE or accuracy code (`evaluate` imports a copy), whose keys are known."""
    return _is_shipped(metric, ("glue", "accuracy"))


def _is_shipped(metric: evaluate.EvaluationModule, names: tuple[str, ...]) -> bool:
    """Whether `metric` runs the code of one of these shipped metrics (`evaluate` imports a copy of it)."""
    source = Path(inspect.getfile(type(metric))).read_bytes()
    return any(source == (SHIPPED_METRICS[name] / f"{name}.py").read_bytes() for name in names)


class _UpperBound:
    """The best selection score a partly scored pass can still reach: every row left predicted right.

    Accuracy is at most `(correct + left) / rows`. Binary F1 `2 tp / (2 tp + fp + fn)` grows with `tp` and falls
    with `fp` and `fn`; a right prediction of each positive left adds to `tp` alone, so F1 is at most
    `2 (tp + positives left) / (2 (tp + positives left) + fp + fn)`. Both bounds are reached by the same
    predictions, so their mean bounds the mean.
    """

    def __init__(self, keys: tuple[str, ...], references: np.ndarray):
        self.keys = keys
        self.references = references
        self.correct = self.true_positives = self.wrong_positives = self.missed_positives = 0
        self.left = len(references)
        self.positives_left = int((references == 1).sum())

    def add(self, predictions: np.ndarray, rows: np.ndarray) -> float:
        """Count the predictions of these rows; the bound on the final score."""
        truth = self.references[rows]
        self.correct += int((predictions == truth).sum())
        self.true_positives += int(((predictions == 1) & (truth == 1)).sum())
        self.wrong_positives += int(((predictions == 1) & (truth != 1)).sum())
        self.missed_positives += int(((predictions != 1) & (truth == 1)).sum())
        self.left -= len(rows)
        self.positives_left -= int((truth == 1).sum())
        best_tp = self.true_positives + self.positives_left
        errors = self.wrong_positives + self.missed_positives
        bounds = {
            "accuracy": (self.correct + self.left) / len(self.references),
            "f1": 2 * best_tp / (2 * best_tp + errors) if best_tp + errors else 1.0,
        }
        return sum(bounds[key] for key in self.keys) / len(self.keys)

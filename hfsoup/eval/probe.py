"""A linear probe: the final projection of a classification head, fitted on the frozen features it sees.

The features are the inputs of the head's final projection (for BERT the pooler output; for a head with a
hidden layer, that layer's output), computed once over a split with the model in eval mode. The projection is
then fitted in float64, on standardized features, by L2-regularized logistic regression (two labels: one
weight vector, written as two opposite rows; more: softmax) with L-BFGS, or by ridge least squares for a
regression (one output). The fit is deterministic: the same features give the same head to the bit.

A sweep's start (`hfsoup/finetune/start.py`) fits its shared head this way before any run trains (LP-FT,
Kumar et al. 2022), and `hfsoup merge --refit-head` fits a fresh head on a soup's averaged backbone.
"""

from __future__ import annotations

from dataclasses import dataclass

import datasets
import torch
from transformers import PreTrainedTokenizerBase

from .metrics import load_metric
from .scoring import tokenize_batches
from .tasks import Task

__all__ = ["Probe", "fit_projection", "head_features", "probe_head"]

DEFAULT_L2 = 1e-3
"""The default L2 strength: `mean loss + l2 / 2 * |W|^2`, on standardized features."""


@dataclass
class Probe:
    """A fitted projection and how well it fits.

    Args:
        weight: the projection's weight, `[num_labels, features]` (one row for a regression).
        bias: its bias, `[num_labels]`.
        train: the task's metrics of the probe's predictions on the rows it was fitted on, with `score`.
        rows: how many rows it was fitted on.
        l2: the L2 strength used.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    train: dict[str, float]
    rows: int
    l2: float

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """The probe's logits for `features`, `[rows, num_labels]`."""
        return features.double() @ self.weight.double().T + self.bias.double()


def head_features(
    model: torch.nn.Module,
    projection: str,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    rows: datasets.Dataset,
    *,
    batch_size: int = 64,
    max_length: int = 128,
) -> torch.Tensor:
    """The input of the module `projection` (the head's final projection) for every row, in dataset order.

    Decoders, whose head projects every token, give the features of each text's last non-pad token.

    Args:
        model: a sequence-classification model; it runs in eval mode, without gradients.
        projection: the name of the head's final projection in `model` (`HeadLayout.output`).
        tokenizer: the model's tokenizer.
        task: names the text columns.
        rows: the split to encode.
        batch_size: rows per forward pass.
        max_length: longest tokenized input.

    Returns:
        A float32 tensor `[len(rows), features]`.
    """
    captured: list[torch.Tensor] = []
    hook = model.get_submodule(projection).register_forward_hook(
        lambda _m, args, _o: captured.append(args[0])
    )
    was_training = model.training
    model.eval()
    features = None
    device = next(model.parameters()).device
    try:
        with torch.inference_mode():
            for indices, inputs in tokenize_batches(
                tokenizer, rows, task.text_columns, batch_size, max_length
            ):
                model(**{name: tensor.to(device) for name, tensor in inputs.items()})
                batch = captured.pop().float().cpu()
                if batch.dim() == 3:  # every token projected: keep each text's last real token
                    last = inputs["attention_mask"].sum(dim=1) - 1
                    batch = batch[torch.arange(len(batch)), last]
                if features is None:
                    features = torch.empty(len(rows), batch.shape[-1])
                features[indices] = batch
    finally:
        hook.remove()
        model.train(was_training)
    return features


def fit_projection(
    features: torch.Tensor, labels: torch.Tensor, num_labels: int, *, l2: float = DEFAULT_L2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit a projection `features @ W.T + b` to `labels`: logistic regression, or ridge for a regression.

    Args:
        features: `[rows, features]`.
        labels: class ids `[rows]`, or floats for a regression (`num_labels == 1`).
        num_labels: the number of outputs; 1 is a regression.
        l2: the L2 strength on standardized features (`mean loss + l2 / 2 * |W|^2`); > 0.

    Returns:
        `(weight, bias)` in float32, of shapes `[num_labels, features]` and `[num_labels]`, on raw features.

    Example:
        ```python
        >>> weight, bias = fit_projection(torch.randn(100, 8), torch.randint(0, 2, (100,)), 2)
        >>> weight.shape, bias.shape
        (torch.Size([2, 8]), torch.Size([2]))
        ```
    """
    x = features.double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    z = (x - mean) / std
    if num_labels == 1:
        w, b = _ridge(z, labels.double(), l2)
    else:
        w, b = _logistic(z, labels.long(), num_labels, l2)
    weight = w / std  # back to raw features: W z + b = (W / std) x + (b - W mean / std)
    bias = b - weight @ mean
    return weight.float(), bias.float()


def probe_head(
    features: torch.Tensor, labels: torch.Tensor, task: Task, *, l2: float = DEFAULT_L2, metric=None
) -> Probe:
    """Fit the task's projection on `features` and score it on them (see [`fit_projection`])."""
    weight, bias = fit_projection(features, labels, task.num_labels, l2=l2)
    probe = Probe(weight, bias, {}, len(labels), l2)
    logits = probe.logits(features)
    predictions = logits[:, 0] if task.is_regression else logits.argmax(dim=-1)
    metric = metric or load_metric(task)
    result = metric.compute(predictions=predictions.numpy(), references=labels.numpy())
    probe.train = {key: float(value) for key, value in result.items()}
    probe.train["score"] = task.leaderboard_score(probe.train)
    return probe


def _ridge(z: torch.Tensor, y: torch.Tensor, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Least squares with an L2 penalty on centered data: `mean (y - z w - b)^2 + l2 |w|^2`, solved exactly."""
    center = y.mean()
    gram = z.T @ z / len(z) + l2 * torch.eye(z.shape[1], dtype=z.dtype)
    w = torch.linalg.solve(gram, z.T @ (y - center) / len(z))
    return w[None, :], center[None] - w[None, :] @ z.mean(0)


def _logistic(
    z: torch.Tensor, y: torch.Tensor, num_labels: int, l2: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-regularized logistic regression by L-BFGS: binary (as two opposite rows) or multinomial."""
    outputs = 1 if num_labels == 2 else num_labels
    w = torch.zeros(outputs, z.shape[1], dtype=z.dtype, requires_grad=True)
    b = torch.zeros(outputs, dtype=z.dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [w, b], lr=1, max_iter=500, tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe"
    )

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        logits = z @ w.T + b
        if outputs == 1:
            value = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], y.double())
        else:
            value = torch.nn.functional.cross_entropy(logits, y)
        value = value + l2 / 2 * (w * w).sum()
        value.backward()
        return value

    optimizer.step(loss)
    w, b = w.detach(), b.detach()
    if outputs == 1:  # softmax over [-s/2, s/2] is sigmoid(s): the binary fit as two rows
        return torch.cat([-w / 2, w / 2]), torch.cat([-b / 2, b / 2])
    return w, b

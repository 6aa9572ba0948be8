"""Accuracy as a local `evaluate` module: the default metric of a classification task defined by a dataset.

It returns `{"accuracy": ...}`, the key and value of the Hub's `accuracy` metric, for any number of classes,
and loads without the Hugging Face Hub. `evaluate` copies this file into its module cache, so it imports
nothing from hfsoup. The configuration name (hfsoup passes the task's name) is not used.

Example:

```python
>>> import evaluate
>>> from hfsoup.eval.metrics import SHIPPED_METRICS
>>> accuracy = evaluate.load(str(SHIPPED_METRICS["accuracy"]))
>>> accuracy.compute(predictions=[0, 2, 1], references=[0, 2, 2])
{'accuracy': 0.666...}
```
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "The fraction of predicted class ids equal to the gold class ids."

_INPUTS = """
Args:
    predictions: predicted class ids.
    references: gold class ids.
Returns:
    accuracy: the fraction of rows predicted right, in [0, 1].
"""


class Accuracy(evaluate.Metric):
    """The fraction of rows whose predicted class is the gold class."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
            format="numpy",
        )

    def _compute(self, predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
        return {"accuracy": float((predictions == references).mean())}

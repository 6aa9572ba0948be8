"""Pearson and Spearman correlations as a local `evaluate` module: the default metric of a regression task.

It returns `pearson` and `spearmanr`, the keys of the GLUE metric's STS-B configuration, computed by SciPy,
and loads without the Hugging Face Hub. `evaluate` copies this file into its module cache, so it imports
nothing from hfsoup. The configuration name (hfsoup passes the task's name) is not used.

Example:

```python
>>> import evaluate
>>> from hfsoup.eval.metrics import SHIPPED_METRICS
>>> correlations = evaluate.load(str(SHIPPED_METRICS["pearson_spearman"]))
>>> correlations.compute(predictions=[0.1, 0.4, 0.3], references=[1.0, 3.0, 2.0])
{'pearson': 0.96..., 'spearmanr': 1.0}
```
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np
from scipy.stats import pearsonr, spearmanr

_DESCRIPTION = "The Pearson and Spearman correlations of predicted and gold real-valued scores."

_INPUTS = """
Args:
    predictions: predicted scores.
    references: gold scores.
Returns:
    pearson: the Pearson correlation, in [-1, 1].
    spearmanr: the Spearman rank correlation, in [-1, 1].
"""


class PearsonSpearman(evaluate.Metric):
    """The linear (Pearson) and rank (Spearman) correlations of predictions with references."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("float32"), "references": datasets.Value("float32")}
            ),
            format="numpy",
        )

    def _compute(self, predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
        return {
            "pearson": float(pearsonr(predictions, references)[0]),
            "spearmanr": float(spearmanr(predictions, references)[0]),
        }

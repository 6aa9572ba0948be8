"""The GLUE benchmark metric as a local `evaluate` module, so it loads without the Hugging Face Hub.

It returns the same keys as the Hub's `glue` metric: `accuracy` for every classification task, plus `f1` for
MRPC and QQP, `pearson` and `spearmanr` for STS-B, and `matthews_correlation` (only) for CoLA. The numbers
come from scikit-learn and SciPy. `evaluate` copies this file into its module cache, so it imports nothing
from hfsoup.

Example:

```python
>>> import evaluate
>>> from hfsoup.tasks import GLUE_METRIC_DIR
>>> glue = evaluate.load(str(GLUE_METRIC_DIR), config_name="mrpc")
>>> glue.compute(predictions=[0, 1, 1], references=[0, 1, 0])
{'accuracy': 0.666..., 'f1': 0.666...}
```
"""

from __future__ import annotations

from collections.abc import Callable

import datasets
import evaluate
import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

_DESCRIPTION = """\
GLUE (General Language Understanding Evaluation, Wang et al. 2018) scores, one configuration per task:
cola, sst2, mrpc, qqp, stsb, mnli, mnli_matched, mnli_mismatched, qnli, rte, wnli.
"""

_CITATION = """\
@inproceedings{wang2019glue,
  title={{GLUE}: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding},
  author={Wang, Alex and Singh, Amanpreet and Michael, Julian and Hill, Felix and Levy, Omer and Bowman, Samuel R.},
  booktitle={International Conference on Learning Representations},
  year={2019},
  note={arXiv:1804.07461}
}
"""

_INPUTS = """
Args:
    predictions: predicted class ids, or predicted similarity scores for stsb.
    references: gold class ids, or gold similarity scores for stsb.
Returns:
    cola: `matthews_correlation`; mrpc, qqp: `accuracy` and `f1` (of the positive class 1);
    stsb: `pearson` and `spearmanr`; every other task: `accuracy`.
"""


def _accuracy(predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
    return {"accuracy": float((predictions == references).mean())}


def _accuracy_and_f1(predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
    f1 = f1_score(y_true=references, y_pred=predictions)
    return {**_accuracy(predictions, references), "f1": float(f1)}


def _correlations(predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
    return {
        "pearson": float(pearsonr(predictions, references)[0]),
        "spearmanr": float(spearmanr(predictions, references)[0]),
    }


def _matthews(predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
    return {"matthews_correlation": float(matthews_corrcoef(references, predictions))}


_COMPUTE: dict[str, Callable[[np.ndarray, np.ndarray], dict[str, float]]] = {
    "cola": _matthews,
    "sst2": _accuracy,
    "mrpc": _accuracy_and_f1,
    "qqp": _accuracy_and_f1,
    "stsb": _correlations,
    "mnli": _accuracy,
    "mnli_matched": _accuracy,
    "mnli_mismatched": _accuracy,
    "qnli": _accuracy,
    "rte": _accuracy,
    "wnli": _accuracy,
}
_REGRESSION = {"stsb"}


class Glue(evaluate.Metric):
    """The official score(s) of one GLUE task; the task is the `config_name` given to `evaluate.load`."""

    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in _COMPUTE:
            raise ValueError(f"unknown GLUE config {self.config_name!r}; use one of: {', '.join(_COMPUTE)}")
        dtype = "float32" if self.config_name in _REGRESSION else "int64"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value(dtype), "references": datasets.Value(dtype)}
            ),
            format="numpy",
            homepage="https://gluebenchmark.com/",
            reference_urls=["https://arxiv.org/abs/1804.07461"],
        )

    def _compute(self, predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
        return _COMPUTE[self.config_name](predictions, references)

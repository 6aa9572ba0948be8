"""Where each model family keeps its sequence-classification head: one table, looked up by `model_type`.

transformers names a classifier's backbone (`base_model_prefix`: `bert`, `roberta`, `model`) but not the
layout of the head on top of it. [`HEAD_LAYOUTS`] says, per model family, which modules form the head and
which one is the final projection, whose rows are the labels (the rows a label alignment permutes), and
whether the logits are read at the last non-pad token, as decoders do (those need a `pad_token_id`).
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PretrainedConfig

from ..errors import UnknownNameError

__all__ = ["HEAD_LAYOUTS", "HeadLayout", "head_layout"]


@dataclass(frozen=True)
class HeadLayout:
    """The sequence-classification head of one model family.

    Args:
        modules: the head's modules, from the backbone's output to the logits; every tensor of a classifier
            outside its backbone lies in one of them.
        output: the final projection (`weight` of shape `[num_labels, hidden]`, and `bias` if any): its rows
            are the labels, so a label alignment permutes them and nothing else.
        pools_last_token: whether the logits are read at each text's last token that is not the pad token
            (decoders): without a `pad_token_id` such a model scores one text at a time only.

    Example:
        ```python
        >>> HEAD_LAYOUTS["roberta"].output
        'classifier.out_proj'
        ```
    """

    modules: tuple[str, ...]
    output: str
    pools_last_token: bool = False

    def owns(self, tensor_name: str) -> bool:
        """Whether a tensor (stored name, e.g. `classifier.out_proj.bias`) belongs to this head."""
        return any(tensor_name.startswith(f"{module}.") for module in self.modules)


_LINEAR = HeadLayout(modules=("classifier",), output="classifier")
_DENSE_THEN_OUT = HeadLayout(
    modules=("classifier.dense", "classifier.out_proj"), output="classifier.out_proj"
)
_POOLER_THEN_LINEAR = HeadLayout(modules=("pooler.dense", "classifier"), output="classifier")
_LAST_TOKEN_SCORE = HeadLayout(modules=("score",), output="score", pools_last_token=True)

HEAD_LAYOUTS: dict[str, HeadLayout] = {
    "albert": _LINEAR,
    "bert": _LINEAR,
    "camembert": _DENSE_THEN_OUT,
    "deberta": _POOLER_THEN_LINEAR,
    "deberta-v2": _POOLER_THEN_LINEAR,
    "distilbert": HeadLayout(modules=("pre_classifier", "classifier"), output="classifier"),
    "electra": _DENSE_THEN_OUT,
    "gemma": _LAST_TOKEN_SCORE,
    "llama": _LAST_TOKEN_SCORE,
    "mistral": _LAST_TOKEN_SCORE,
    "modernbert": HeadLayout(modules=("head.dense", "head.norm", "classifier"), output="classifier"),
    "mpnet": _DENSE_THEN_OUT,
    "qwen2": _LAST_TOKEN_SCORE,
    "qwen3": _LAST_TOKEN_SCORE,
    "roberta": _DENSE_THEN_OUT,
    "xlm-roberta": _DENSE_THEN_OUT,
}


def head_layout(config: PretrainedConfig) -> HeadLayout:
    """The classification head layout of a model, from its config's `model_type`.

    Args:
        config: the model's config.

    Returns:
        The family's [`HeadLayout`].

    Raises:
        [`UnknownNameError`]: the model type is not in [`HEAD_LAYOUTS`]; the message names it, its
            architectures, and the supported model types.

    Example:
        ```python
        >>> head_layout(AutoConfig.from_pretrained("runs/mrpc-seed1")).modules
        ('classifier',)
        ```
    """
    layout = HEAD_LAYOUTS.get(config.model_type)
    if layout is None:
        architectures = ", ".join(config.architectures or []) or "no architectures listed"
        raise UnknownNameError(
            f"hfsoup does not know the classification head of model type {config.model_type!r} "
            f"({architectures}), so it cannot align its labels or check its head: the supported model types "
            f"are {', '.join(sorted(HEAD_LAYOUTS))}."
        )
    return layout

"""Can these ingredients be averaged? One report with every difference, found before any averaging.

[`check_compatibility`] compares the ingredients and collects every problem at once:

- **errors** (averaging is refused): model type or architecture, a config field that changes the computation
  (sizes, layers, heads, vocabulary, activation, `layer_norm_eps`, `problem_type`, `pad_token_id`, ...),
  custom code, a classification head of an unknown family or not laid out as its family's, a decoder
  classifier without a pad token (or a tokenizer padding with another), the number or the set of labels,
  tensor names, tensor shapes, non-float dtypes, tokenizers that give other token ids, NaN or Inf weights;
- **warnings** (averaging is possible but you should know): classifier rows reordered to the common label
  order, generic labels taken to be in that order, ingredients that do not look fine-tuned from one common
  base, tensors the base lacks;
- **notes**: float dtypes that differ (F32, BF16, F16 are all averaged in float32), training-only config
  fields that differ (dropout, `initializer_range`), skipped checks.

It also computes the label alignment (`report.label_orders`), which the caller applies with
`report.aligned(ingredients)`: the ingredients themselves are never changed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ...errors import IncompatibleIngredientsError, InvalidSettingError
from ..ingredient import Ingredient
from .classifier import check_heads, check_pad_tokens
from .config import check_config, check_declared_bases, check_remote_code
from .labels import check_labels
from .report import CompatReport
from .tokenizer import check_tokenizers
from .weights import COMMON_BASE_MAX_DISTANCE, check_base, check_tensors, check_weights

__all__ = [
    "COMMON_BASE_MAX_DISTANCE",
    "CompatReport",
    "check_compatibility",
    "check_weights",
    "ensure_compatible",
    "raise_if_incompatible",
]

logger = logging.getLogger(__name__)


def check_compatibility(
    ingredients: list[Ingredient],
    *,
    base: Ingredient | None = None,
    check_values: bool = True,
    task_labels: Sequence[str] | None = None,
    allow_custom_code: bool = False,
) -> CompatReport:
    """Find every reason these ingredients cannot (or should not) be averaged, before any averaging.

    The metadata checks read configs, tokenizers and safetensors headers only (no weight is downloaded); the
    value checks ([`check_weights`]) stream every weight. A caller that wants a doomed merge to download
    nothing checks metadata first, then adds the value checks to the same report with `check_weights`.

    Args:
        ingredients: the models to average; the first is the reference the others are compared with.
        base: the model they were fine-tuned from, if known: checked for a matching backbone and included
            in the common-base distances.
        check_values: also stream every weight to look for NaN/Inf and measure the common-base distances.
        task_labels: the task's label names in label-id order, the order every ingredient is aligned to;
            `None` aligns to the first ingredient that names its labels.
        allow_custom_code: accept ingredients whose config declares custom code (never run), with a warning.

    Returns:
        A [`CompatReport`]; `report.ok()` is `False` when averaging is impossible, and
        `report.aligned(ingredients)` gives the ingredients in one label order.

    Raises:
        `InvalidSettingError`: `ingredients` is empty.

    Example:
        ```python
        >>> report = check_compatibility(load_ingredients(["runs/seed1", "runs/seed2"]))
        >>> print(report.to_text())
        ```
    """
    if not ingredients:
        raise InvalidSettingError("check_compatibility got no ingredients; give at least one model to check.")
    names = [ingredient.name for ingredient in ingredients]
    report = CompatReport(ingredients=names, base=base.name if base is not None else None)
    identities = [ingredient.identity for ingredient in ingredients]
    for identity in dict.fromkeys(i for i in identities if identities.count(i) > 1):
        listed = [name for name, i in zip(names, identities, strict=True) if i == identity]
        report.warnings.append(
            f"{identity} is listed {len(listed)} times ({', '.join(listed)}), so it weighs more in the soup."
        )
    check_config(ingredients, names, report)
    check_remote_code([*ingredients, *([base] if base else [])], report, allow=allow_custom_code)
    check_heads(ingredients, report)
    check_pad_tokens(ingredients, report)
    check_labels(ingredients, report, task_labels)
    check_tensors(ingredients, report)
    if base is None:
        check_tokenizers(ingredients, names, report)
    else:
        check_tokenizers([*ingredients, base], [*names, f"{base.name} (base)"], report)
        check_base(ingredients, base, report)
    check_declared_bases(ingredients, report)
    if check_values:
        check_weights(ingredients, base, report)
    logger.info(
        "Compatibility of %s: %d error(s), %d warning(s)", names, len(report.errors), len(report.warnings)
    )
    return report


def ensure_compatible(ingredients: list[Ingredient], **options) -> CompatReport:
    """[`check_compatibility`], raising if the ingredients cannot be averaged.

    Returns:
        The [`CompatReport`] (it may hold warnings and notes).

    Raises:
        `IncompatibleIngredientsError`: the report has errors; the exception's `report` holds all of them.

    Example:
        ```python
        >>> report = ensure_compatible(load_ingredients(["runs/seed1", "runs/seed2"]))
        ```
    """
    return raise_if_incompatible(check_compatibility(ingredients, **options))


def raise_if_incompatible(report: CompatReport) -> CompatReport:
    """`report`, or `IncompatibleIngredientsError` (holding it) if it has errors."""
    if not report.ok():
        raise IncompatibleIngredientsError(report.summary(), report=report)
    return report

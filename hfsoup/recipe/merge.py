"""Typed recipes, built from CLI flags or loaded from YAML (a recipe of `recipes/` or a `soup.yaml`).

Both ways build the same [`MergeRecipe`], which checks itself on construction (every field's type and value,
with one line naming the field, the value and what is allowed), so the pipeline only ever sees valid recipes
and the CLI stays a thin shell. This module is the one reader of `soup.yaml`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HfSoupError, RecipeError
from ..eval.tasks import get_task
from ..result import SOUP_FORMAT
from .fields import build as _build
from .fields import check_types as _check_types
from .fields import read_yaml as _read_yaml

DTYPES = ("float32", "bfloat16", "float16")
"""The dtypes a merge scores in (`dtype`) or saves the soup in (`output_dtype`)."""

__all__ = ["DTYPES", "LEARNED_FIELDS", "MergeRecipe", "load_recipe", "load_soup_yaml"]


LEARNED_FIELDS = ("learned_per_layer", "learned_epochs", "learned_learning_rate", "learned_coefficients")
"""The recipe fields of the learned soup only."""


@dataclass
class MergeRecipe:
    """Everything `hfsoup merge` needs, checked on construction.

    Args:
        task: a registered task (`mrpc`, `stsb`, ...: see `hfsoup.eval.TASKS`); `None` with a `dataset` scores on
            the task its columns define (see `hfsoup.eval.resolve_task`), and `None` without one makes a plain,
            unscored merge (`uniform` or `weighted` only).
        models: the ingredients: local folders, `user/name` or `user/name@revision`.
        method: the soup method, a name of `hfsoup.soup.SOUP_METHODS`: `greedy`, `uniform`, `weighted`,
            `exhaustive`, `learned` or `model_stock`.
        weights: one weight per model (finite, >= 0, positive sum), for `weighted` only.
        dataset: a Hub dataset id, a local folder laid out like one, or a data file; `None` for `nyu-mll/glue`
            (with a task) or for no scoring (without one).
        text_columns: the one or two text columns to score on: needed with a `dataset` and no `task`, and
            replacing a task's own.
        label_column: the gold label column (default: the task's, or `label`).
        selection_split: the split the soup is chosen on (`datasets` syntax, or the default seeded half).
        report_split: the split the result is reported on; it must differ from `selection_split`.
        seed: the seed of the default `selection`/`report` halves of the validation split.
        metric: a shipped or local `evaluate` metric; `None` for the task's.
        metric_key: the metric output key that selection maximizes; `None` for the leaderboard score.
        base: the common base model, for the compatibility report's distances, and the anchor of `model_stock`.
        batch_size: scoring batch size.
        max_length: longest tokenized input when scoring.
        dtype: the dtype of the scoring passes, one of `DTYPES`; the soup is averaged in float32 either way.
        output_dtype: the dtype the soup is saved in, one of `DTYPES`; `None` for the ingredients' (the
            widest floating-point dtype of their weight files).
        content_hashes: local ingredient -> the `sha256:` of its weights when the recipe was recorded; a replay
            refuses a folder whose weights changed since.
        learned_per_layer: `learned` only: one coefficient per ingredient and tensor group (default: one per
            ingredient). See `hfsoup.soup.methods.LearnedSettings` for this and the next two.
        learned_epochs: `learned` only: passes over the selection split (default 5).
        learned_learning_rate: `learned` only: Adam's learning rate on the coefficients' logits (default 0.5).
        greedy_min_gain: `greedy` only: accept an ingredient only if the soup's selection score rises by more
            than this (default 0, the paper's strict rule).
        refit_head: after souping, fit the head's final projection anew on the soup's frozen features of
            `refit_split` (for ingredients whose heads were drawn independently); scored beside the soup with
            the averaged head.
        refit_split: the training split `refit_head` fits on (`datasets` syntax; default `train`).
        allow_overlapping_splits: score a soup whose selection and report splits share rows (refused by default:
            its report score would not be held out); the card and the table then say how many rows are shared.
        learned_coefficients: `learned` only: the coefficients a fit recorded (group -> one per model), which a
            replay of its `soup.yaml` reuses instead of fitting; dropped when the method or a `learned_*`
            setting is overridden.

    Raises:
        RecipeError: a field has a wrong type or value, or the task or method does not exist.
    """

    task: str | None = None
    models: list[str] = field(default_factory=list)
    method: str = "greedy"
    weights: list[float] | None = None
    dataset: str | None = None
    text_columns: list[str] | None = None
    label_column: str | None = None
    selection_split: str = "selection"
    report_split: str = "report"
    seed: int = 0
    metric: str | None = None
    metric_key: str | None = None
    base: str | None = None
    batch_size: int = 64
    max_length: int = 128
    dtype: str = "float32"
    output_dtype: str | None = None
    content_hashes: dict[str, str] | None = None
    learned_per_layer: bool | None = None
    learned_epochs: int | None = None
    learned_learning_rate: float | None = None
    learned_coefficients: dict[str, list[float]] | None = None
    greedy_min_gain: float | None = None
    refit_head: bool | None = None
    refit_split: str | None = None
    allow_overlapping_splits: bool | None = None

    def __post_init__(self):
        _check_types(self, "recipe")
        from ..soup.methods import get_method

        try:
            if self.task is not None:
                get_task(self.task)
            method = get_method(self.method)
        except HfSoupError as error:
            raise RecipeError(str(error)) from error
        self._check_task(method.chooses or method.fits)
        count = len(self.models)
        if (self.weights is not None) != (self.method == "weighted"):
            raise RecipeError("--weights goes with --method weighted, and --method weighted needs --weights.")
        if self.weights is not None:
            if count and len(self.weights) != count:
                raise RecipeError(
                    f"--weights has {len(self.weights)} values for {count} models; give one per model."
                )
            if not all(math.isfinite(w) and w >= 0 for w in self.weights) or not math.fsum(self.weights) > 0:
                raise RecipeError(
                    f"--weights must be finite numbers >= 0 with a positive sum, got {self.weights}."
                )
        if self.selection_split == self.report_split:
            raise RecipeError(
                f"the selection and report splits are both {self.report_split!r}: a soup must be reported on "
                "data it was not chosen on; pick two different splits."
            )
        if self.batch_size < 1 or self.max_length < 1:
            raise RecipeError("batch_size and max_length must be at least 1.")
        self._check_learned(count)
        if self.refit_split is not None and not self.refit_head:
            raise RecipeError("--refit-split goes with --refit-head; add --refit-head or drop --refit-split.")
        if self.refit_head and not self.scored:
            raise RecipeError(
                "--refit-head fits a head on a task's training split: add --task (or --dataset with --text-column)."
            )
        gain = self.greedy_min_gain
        if gain is not None and (self.method != "greedy" or not (math.isfinite(gain) and gain >= 0)):
            raise RecipeError(
                f"greedy_min_gain goes with method greedy and must be a number >= 0, got {gain}."
            )
        for name in ("dtype", "output_dtype"):
            if getattr(self, name) not in (*DTYPES, None):
                raise RecipeError(f"{name} must be one of {', '.join(DTYPES)}, got {getattr(self, name)!r}.")

    def _check_learned(self, count: int) -> None:
        learned = {name: getattr(self, name) for name in LEARNED_FIELDS}
        if self.method != "learned" and any(value is not None for value in learned.values()):
            given = [name for name, value in learned.items() if value is not None]
            raise RecipeError(
                f"{', '.join(given)} go(es) with method learned; drop it or use --method learned."
            )
        if self.learned_epochs is not None and self.learned_epochs < 1:
            raise RecipeError(f"learned_epochs must be at least 1, got {self.learned_epochs}.")
        rate = self.learned_learning_rate
        if rate is not None and not (math.isfinite(rate) and rate > 0):
            raise RecipeError(f"learned_learning_rate must be a finite number > 0, got {rate}.")
        for group, values in (self.learned_coefficients or {}).items():
            if count and len(values) != count:
                raise RecipeError(
                    f"learned_coefficients[{group!r}] has {len(values)} values for {count} models; the soup.yaml "
                    "belongs to other models: merge them anew without --recipe."
                )

    @property
    def scored(self) -> bool:
        """Whether the merge scores its ingredients and soup (a task or a dataset is given), or only averages."""
        return self.task is not None or self.dataset is not None

    def _check_task(self, method_chooses: bool) -> None:
        """What a merge needs to score on: a task, or a dataset with text columns; or nothing, to only average."""
        if self.text_columns is not None and len(self.text_columns) not in (1, 2):
            raise RecipeError(
                f"text_columns must name one or two columns (e.g. [text] or [premise, hypothesis]), got "
                f"{self.text_columns}."
            )
        if self.task is None and self.dataset is not None and not self.text_columns:
            raise RecipeError(
                f"--dataset {self.dataset} without --task needs --text-column, the one or two text columns to "
                "score on (e.g. --text-column text, or --text-column premise hypothesis)."
            )
        if self.scored:
            return
        if self.text_columns or self.label_column:
            raise RecipeError("--text-column and --label-column name columns of a --dataset: add --dataset.")
        if method_chooses:
            raise RecipeError(
                f"method {self.method!r} needs data to score on: add --task (e.g. --task mrpc) or --dataset with --text-column; "
                "or average without scoring with --method uniform (or --method weighted --weights ...)."
            )

    def check_models(self, count: int | None = None) -> None:
        """Refuse a merge of no model, or a count the method or the weights do not fit, before any work.

        Args:
            count: how many ingredients the merge will have; `None` for `len(models)` (a sweep's soup counts
                the ingredients its runs will yield before they exist).

        Raises:
            RecipeError: no model, or a count the method cannot soup, or weights of another length.
        """
        from ..soup.methods import get_method

        count = len(self.models) if count is None else count
        if get_method(self.method).needs_base and self.base is None:
            raise RecipeError(
                f"method {self.method} needs --base, the model the ingredients were fine-tuned from (a sweep "
                "soups around its own start, init-<key>/)."
            )
        if count < 1:
            raise RecipeError("a merge needs at least one model; give model folders or Hub ids.")
        if self.weights is not None and len(self.weights) != count:
            raise RecipeError(
                f"--weights has {len(self.weights)} values for {count} models; give one per model."
            )
        get_method(self.method).check_count(count)

    def to_dict(self) -> dict:
        """The recipe as plain data, without defaulted empty fields (what `soup.yaml` stores)."""
        data = dataclasses.asdict(self)
        return {key: value for key, value in data.items() if value is not None}


def load_soup_yaml(path: str | Path) -> dict:
    """Read a `soup.yaml` back as plain data, checking it is one this hfsoup can read.

    Raises:
        RecipeError: the file is missing, not YAML, of another format, or has no `recipe` mapping.

    Example:
        ```python
        >>> load_soup_yaml("soups/mrpc/soup.yaml")["recipe"]["method"]
        'greedy'
        ```
    """
    path = Path(path)
    data = _read_yaml(path, "soup file")
    found = data.get("format") if isinstance(data, dict) else None
    if found != SOUP_FORMAT:
        raise RecipeError(
            f"{path} has format {found!r} but this hfsoup reads {SOUP_FORMAT!r}; give a soup.yaml "
            "written by hfsoup, or upgrade hfsoup (pip install -U hfsoup) if a newer one wrote it."
        )
    if not isinstance(data.get("recipe"), dict) or not isinstance(data.get("ingredients", []), list):
        raise RecipeError(
            f"{path} has no 'recipe' mapping, so it cannot be replayed; rewrite it with hfsoup merge."
        )
    return data


def _replayed(data: dict) -> dict:
    """The recipe of a soup.yaml, with its ingredients pinned to the revisions and contents used."""
    recipe = dict(data["recipe"])
    ingredients = [i for i in data.get("ingredients", []) if isinstance(i, dict) and "pinned_reference" in i]
    if ingredients:
        recipe["models"] = [i["pinned_reference"] for i in ingredients]
        recipe["content_hashes"] = {
            i["pinned_reference"]: i["content_hash"] for i in ingredients if i.get("content_hash")
        } or None
    recipe.pop("finetune", None)  # the trained ingredients are pinned above
    if data.get("coefficients"):
        recipe["learned_coefficients"] = data["coefficients"]  # a replay rebuilds the soup, fitting nothing
    return recipe


def load_recipe(path: str | Path, **overrides) -> MergeRecipe:
    """Load a recipe from YAML: a recipe of `recipes/`, or the `soup.yaml` written next to a soup.

    A `soup.yaml` replays with its pinned ingredients (`repo@sha`, and the content hash of each local
    folder), so it rebuilds the same soup or refuses to; a learned soup's replay reuses its recorded
    coefficients unless the method or a `learned_*` setting is overridden.

    Args:
        path: the YAML file.
        **overrides: fields that replace the file's (the CLI's explicit flags); `None` values are ignored.

    Raises:
        RecipeError: the file is missing, is not YAML, or has a wrong field.

    Example:
        ```python
        >>> recipe = load_recipe("recipes/mrpc-minilm.yaml")
        >>> recipe.method
        'greedy'
        ```
    """
    path = Path(path)
    data = _read_yaml(path, "recipe file")
    if not isinstance(data, dict):
        raise RecipeError(f"{path} must hold a mapping of recipe fields (task, models, method, ...).")
    if "format" in data:
        data = _replayed(load_soup_yaml(path))
    if any(overrides.get(name) is not None for name in ("method", *LEARNED_FIELDS[:3])):
        data.pop("learned_coefficients", None)  # they were fitted with other settings: fit anew
    if overrides.get("method") not in (None, "greedy"):
        data.pop(
            "greedy_min_gain", None
        )  # a greedy setting of the replayed soup, not of the method asked for
    data.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return _build(MergeRecipe, data, "recipe")
    except RecipeError as error:
        raise RecipeError(f"{path}: {error}") from error

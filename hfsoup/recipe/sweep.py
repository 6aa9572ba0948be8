"""The recipe of `hfsoup finetune`: a fine-tuning sweep on a task, and optionally a soup of its runs.

The YAML is flat (see `recipes/mrpc.yaml`): the sweep's `task`, `dataset`, `output_dir` and `soup` beside the
fields of [`FinetuneRecipe`]. It is checked whole when loaded, the soup section included, before any training.
A merge recipe with a `finetune:` section (`recipes/mrpc-minilm.yaml`) is a sweep too: training has one door.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ..errors import HfSoupError, RecipeError
from ..eval.tasks import get_task
from .fields import build as _build
from .fields import check_types as _check_types
from .fields import read_yaml as _read_yaml
from .finetune import FinetuneRecipe
from .merge import MergeRecipe, load_recipe

__all__ = ["SweepRecipe", "load_merge_or_sweep", "load_sweep"]

STARTS_BASE = "init-<key>"
"""What a sweep's soup takes as its `base` when none is given: the sweep's start, known once it is built."""

# The soup's fields that the sweep sets itself.
_SET_BY_SWEEP = ("task", "dataset", "text_columns", "label_column", "finetune")


@dataclass
class SweepRecipe:
    """What `hfsoup finetune RECIPE` runs: a fine-tuning sweep on a task, and optionally a soup of its runs.

    The YAML is flat: `task` (or `text_columns` and `label_column`), `dataset`, `output_dir` and `soup` at the
    top, beside the fields of [`FinetuneRecipe`] (`base`, `grid`, `training`, `ema_decay`, `ingredients`,
    `push_to_hub`, ...).

    Args:
        task: the task to fine-tune on (see `hfsoup.eval.TASKS`), or `None` for a dataset's own columns.
        finetune: the runs.
        dataset: a Hub dataset id, a local folder laid out like one, or a data file; `None` for `nyu-mll/glue`.
        text_columns: with a `dataset` and no `task`, its one or two text columns (as `merge --text-column`).
        label_column: the label column (class names, ids, or floats for a regression); `label` by default.
        output_dir: where the runs go; `None` for `runs/<task>`.
        soup: the [`MergeRecipe`] of the runs' soup, or its fields as a mapping (`method`, `selection_split`,
            ..., and `output_dir`, default `<output_dir>/soup`); its `models` (usually none) are souped before
            the runs' ingredients. `None` for no soup.
        soup_output_dir: where the soup goes (the mapping's `output_dir`); `None` for `<output_dir>/soup`.
        mix_rates: soup the runs of every learning rate together; by default, when the runs span several rates,
            each rate is souped alone and the soup best on the selection split is kept (`hfsoup.finetune.rates`).
    """

    task: str | None
    finetune: FinetuneRecipe
    dataset: str | None = None
    text_columns: list[str] | None = None
    label_column: str | None = None
    output_dir: str | None = None
    soup: MergeRecipe | None = None
    soup_output_dir: str | None = None
    mix_rates: bool = False

    def __post_init__(self):
        if isinstance(self.finetune, dict):
            self.finetune = _build(FinetuneRecipe, self.finetune, "finetune")
        if isinstance(self.soup, dict):
            self.soup = self._soup_of(self.soup)
        _check_types(self, "recipe")
        if self.task is None and not (self.dataset and self.text_columns):
            raise RecipeError(
                "the recipe needs a task (e.g. task: mrpc), or a dataset with its text_columns (and label_column)."
            )
        if self.task is not None and not (self.dataset and self.text_columns):
            try:
                get_task(self.task)
            except HfSoupError as error:
                raise RecipeError(str(error)) from error
        if self.soup is not None:
            soup = self.soup
            if soup.base is None and self.finetune.head_seed is not None:
                soup = dataclasses.replace(soup, base=STARTS_BASE)  # the sweep soups around its own start
            soup.check_models(self.ingredient_count)  # a doomed soup fails now, before any training

    def _soup_of(self, fields: dict) -> MergeRecipe:
        """The soup section as a `MergeRecipe` on the sweep's task and data; its `output_dir` is kept aside."""
        fields = dict(fields)
        self.soup_output_dir = fields.pop("output_dir", None) or self.soup_output_dir
        shared = dict(
            task=self.task,
            dataset=self.dataset,
            text_columns=self.text_columns,
            label_column=self.label_column,
        )
        return _build(MergeRecipe, {**fields, **shared}, "soup")

    @property
    def ingredient_count(self) -> int:
        """How many ingredients the soup will have: its own models, then every run's ingredients."""
        trained = len(self.finetune.points) * self.finetune.ingredients_per_run
        return len(self.soup.models if self.soup else []) + trained

    @property
    def runs_dir(self) -> Path:
        """Where the runs go."""
        return Path(self.output_dir or f"runs/{self.task or Path(self.dataset).stem}")

    @property
    def soup_dir(self) -> Path | None:
        """Where the soup goes, if the recipe makes one."""
        if self.soup is None:
            return None
        return Path(self.soup_output_dir or self.runs_dir / "soup")

    def soup_recipe(self, folders: list[str]) -> MergeRecipe:
        """The soup's recipe with its ingredients: its own models, then `folders` (the runs' ingredients)."""
        return dataclasses.replace(self.soup, models=[*self.soup.models, *folders])


def load_sweep(path: str | Path, **overrides) -> SweepRecipe:
    """Load the recipe of `hfsoup finetune` from YAML (see `recipes/`).

    Args:
        path: the YAML file.
        **overrides: `dataset`, `output_dir` and any [`FinetuneRecipe`] field (e.g. `base`) that replace the
            file's (the CLI's explicit flags); `None` values are ignored.

    Raises:
        RecipeError: the file is missing, is not YAML, or has a wrong field.
    """
    path = Path(path)
    data = _read_yaml(path, "recipe file")
    if not isinstance(data, dict):
        raise RecipeError(f"{path} must hold a mapping of recipe fields (task, base, grid, ...).")
    data.update({key: value for key, value in overrides.items() if value is not None})
    for name in (*_SET_BY_SWEEP, "models"):
        if isinstance(data.get("soup"), dict) and name in data["soup"]:
            raise RecipeError(
                f"{path}: soup.{name} is set by the sweep itself; remove it from the soup section."
            )
    sweep_fields = {f.name for f in dataclasses.fields(SweepRecipe)} - {"finetune", "soup_output_dir"}
    outer = {key: value for key, value in data.items() if key in sweep_fields}
    inner = {key: value for key, value in data.items() if key not in sweep_fields}
    try:
        return SweepRecipe(finetune=_build(FinetuneRecipe, inner, "recipe"), **{"task": None, **outer})
    except RecipeError as error:
        raise RecipeError(f"{path}: {error}") from error


def load_merge_or_sweep(
    path: str | Path, *, output_dir: str | None = None, **overrides
) -> MergeRecipe | SweepRecipe:
    """The recipe `hfsoup merge --recipe PATH` runs: a `MergeRecipe`, or a sweep if the file trains its ingredients.

    A merge recipe with a `finetune:` section trains its runs into `<output_dir>-ingredients/` (or
    `hfsoup-ingredients/` without an output folder) and soups them into `output_dir`, through the sweep.

    Args:
        path: a merge recipe or a `soup.yaml`.
        output_dir: where the soup goes (`--output-dir`).
        **overrides: merge fields given as flags (see [`load_recipe`]).

    Raises:
        RecipeError: the file is missing, is not YAML, or has a wrong field.
    """
    path = Path(path)
    data = _read_yaml(path, "recipe file")
    if not (isinstance(data, dict) and "finetune" in data and "format" not in data):
        return load_recipe(path, **overrides)
    data.update({key: value for key, value in overrides.items() if value is not None})
    outer = {name: data.pop(name, None) for name in _SET_BY_SWEEP}
    runs = Path(output_dir).with_name(f"{Path(output_dir).name}-ingredients") if output_dir else None
    try:
        mix_rates = bool(data.pop("mix_rates", False))
        sweep = SweepRecipe(
            **outer,
            output_dir=str(runs or "hfsoup-ingredients"),
            soup=data,
            soup_output_dir=output_dir,
            mix_rates=mix_rates,
        )
    except RecipeError as error:
        raise RecipeError(f"{path}: {error}") from error
    return sweep

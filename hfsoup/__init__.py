"""hfsoup: weight averaging as a first-class, Hub-native step of fine-tuning with Hugging Face.

The public API is re-exported lazily (PEP 562): `import hfsoup` imports none of torch, transformers,
datasets or evaluate; each name loads its module on first use.

Example:
    ```python
    >>> from hfsoup import EmaTrainerCallback, ModelEma, load_ingredients, check_compatibility
    ```
"""

from ._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    # EMA
    "EmaSettings": ".ema",
    "EmaTrainerCallback": ".ema",
    "ModelEma": ".ema",
    # sources
    "IngredientSource": ".sources",
    "LocalSource": ".sources",
    "TensorInfo": ".sources",
    "model_folder": ".sources",
    "push_folder": ".sources",
    # soups
    "SOUP_METHODS": ".soup",
    "CompatReport": ".soup",
    "Geometry": ".soup",
    "Ingredient": ".soup",
    "SoupMethod": ".soup",
    "SoupResult": ".soup",
    "SoupStep": ".soup",
    "check_compatibility": ".soup",
    "ensure_compatible": ".soup",
    "get_method": ".soup",
    "load_ingredient": ".soup",
    "load_ingredients": ".soup",
    "load_into": ".soup",
    "pairwise_geometry": ".soup",
    # evaluation
    "DEFAULT_DATASET": ".eval",
    "TASKS": ".eval",
    "MeanOf": ".eval",
    "Scorer": ".eval",
    "Task": ".eval",
    "get_task": ".eval",
    "load_metric": ".eval",
    "load_split": ".eval",
    "register_task": ".eval",
    "resolve_task": ".eval",
    # recipes, results, cards
    "FinetuneRecipe": ".recipe",
    "MergeRecipe": ".recipe",
    "load_recipe": ".recipe",
    "load_soup_yaml": ".recipe",
    "SweepRecipe": ".recipe",
    "load_sweep": ".recipe",
    "run_merge": ".merge",
    "run_finetune": ".finetune",
    "IngredientRecord": ".result",
    "MergeResult": ".result",
    "build_card": ".publish",
    "soup_yaml": ".publish",
    "write_card_files": ".publish",
    # errors
    "DatasetError": ".errors",
    "HfSoupError": ".errors",
    "HubAuthError": ".errors",
    "HubError": ".errors",
    "HubUnreachableError": ".errors",
    "IncompatibleIngredientsError": ".errors",
    "IngredientNotFoundError": ".errors",
    "InvalidSettingError": ".errors",
    "OutputExistsError": ".errors",
    "RecipeError": ".errors",
    "RepoNotFoundError": ".errors",
    "RevisionNotFoundError": ".errors",
    "UnknownNameError": ".errors",
    "UnsafeWeightsError": ".errors",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["__version__", *_EXPORTS]

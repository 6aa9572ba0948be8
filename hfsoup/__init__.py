"""hfsoup: weight averaging as a first-class, Hub-native step of fine-tuning with Hugging Face."""

from .callback import EmaTrainerCallback
from .card import build_card, load_soup_yaml, soup_yaml, write_card_files
from .compat import CompatReport, check_compatibility, ensure_compatible
from .ema import EmaSettings, ModelEma
from .errors import (
    DatasetError,
    HfSoupError,
    HubAuthError,
    HubError,
    HubUnreachableError,
    IncompatibleIngredientsError,
    IngredientNotFoundError,
    InvalidSettingError,
    OutputExistsError,
    RecipeError,
    RepoNotFoundError,
    RevisionNotFoundError,
    UnknownNameError,
    UnsafeWeightsError,
)
from .geometry import Geometry, pairwise_geometry
from .ingredients import (
    Ingredient,
    IngredientSource,
    LocalSource,
    TensorInfo,
    load_ingredient,
    load_ingredients,
)
from .recipe import FinetuneRecipe, MergeRecipe, load_recipe
from .result import IngredientRecord, MergeResult
from .scoring import Scorer
from .soup import SOUP_METHODS, SoupMethod, SoupResult, SoupStep, get_method, load_into
from .tasks import DEFAULT_DATASET, TASKS, MeanOf, Task, get_task, load_metric, load_split

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_DATASET",
    "SOUP_METHODS",
    "TASKS",
    "CompatReport",
    "DatasetError",
    "EmaSettings",
    "EmaTrainerCallback",
    "FinetuneRecipe",
    "Geometry",
    "HfSoupError",
    "HubAuthError",
    "HubError",
    "HubUnreachableError",
    "IncompatibleIngredientsError",
    "Ingredient",
    "IngredientNotFoundError",
    "IngredientRecord",
    "IngredientSource",
    "InvalidSettingError",
    "LocalSource",
    "MeanOf",
    "MergeRecipe",
    "MergeResult",
    "ModelEma",
    "OutputExistsError",
    "RecipeError",
    "RepoNotFoundError",
    "RevisionNotFoundError",
    "Scorer",
    "SoupMethod",
    "SoupResult",
    "SoupStep",
    "Task",
    "TensorInfo",
    "UnknownNameError",
    "UnsafeWeightsError",
    "__version__",
    "build_card",
    "check_compatibility",
    "ensure_compatible",
    "get_method",
    "get_task",
    "load_ingredient",
    "load_ingredients",
    "load_into",
    "load_metric",
    "load_recipe",
    "load_soup_yaml",
    "load_split",
    "pairwise_geometry",
    "soup_yaml",
    "write_card_files",
]

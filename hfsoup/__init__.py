"""hfsoup: weight averaging as a first-class, Hub-native step of fine-tuning with Hugging Face."""

from .callback import EmaTrainerCallback
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

__version__ = "0.1.0"

__all__ = [
    "DatasetError",
    "EmaSettings",
    "EmaTrainerCallback",
    "HfSoupError",
    "HubAuthError",
    "HubError",
    "HubUnreachableError",
    "IncompatibleIngredientsError",
    "IngredientNotFoundError",
    "InvalidSettingError",
    "ModelEma",
    "OutputExistsError",
    "RecipeError",
    "RepoNotFoundError",
    "RevisionNotFoundError",
    "UnknownNameError",
    "UnsafeWeightsError",
    "__version__",
]

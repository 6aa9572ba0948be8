"""Soups: ingredients, their compatibility report, their geometry, and the soup methods."""

from .compat import (
    COMMON_BASE_MAX_DISTANCE,
    CompatReport,
    check_compatibility,
    check_weights,
    ensure_compatible,
    raise_if_incompatible,
)
from .geometry import Geometry, pairwise_geometry
from .ingredient import Ingredient, load_ingredient, load_ingredients
from .methods import (
    SOUP_METHODS,
    SOUPS_PAPER,
    LearnedSettings,
    SoupMethod,
    SoupResult,
    SoupStep,
    get_method,
    load_into,
)

__all__ = [
    "COMMON_BASE_MAX_DISTANCE",
    "SOUPS_PAPER",
    "SOUP_METHODS",
    "CompatReport",
    "Geometry",
    "Ingredient",
    "LearnedSettings",
    "SoupMethod",
    "SoupResult",
    "SoupStep",
    "check_compatibility",
    "check_weights",
    "ensure_compatible",
    "get_method",
    "load_ingredient",
    "load_ingredients",
    "load_into",
    "pairwise_geometry",
    "raise_if_incompatible",
]

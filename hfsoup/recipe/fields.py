"""Typed fields: values checked against type hints, dataclasses built from mappings, YAML read, one line each.

What every recipe class shares ([`MergeRecipe`], [`FinetuneRecipe`], [`SweepRecipe`]): a wrong field is one
`RecipeError` naming the field, the value and what is allowed, before any work.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path

import yaml

from ..errors import RecipeError

__all__ = ["build", "check_types", "check_value", "read_yaml"]


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


def check_types(recipe: object, where: str) -> None:
    hints = typing.get_type_hints(type(recipe))
    for item in dataclasses.fields(recipe):
        value = getattr(recipe, item.name)
        setattr(recipe, item.name, check_value(value, hints[item.name], where, item.name))


def build(cls, data: object, where: str):
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


def read_yaml(path: Path, what: str) -> object:
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

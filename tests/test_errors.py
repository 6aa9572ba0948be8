"""Tests of hfsoup.errors: the hierarchy and `first_line`, which keeps every error to one line."""

from __future__ import annotations

import pytest

from hfsoup import errors
from hfsoup.errors import HfSoupError, first_line


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("one line", "one line"),
        ("first\nsecond\nthird", "first"),
        ("\n\n   \n  indented first  \nsecond", "indented first"),
        ("trailing newline\n", "trailing newline"),
        ("windows\r\nline", "windows"),
    ],
)
def test_first_line_is_the_first_non_blank_line_stripped(message, expected):
    assert first_line(ValueError(message)) == expected


def test_first_line_of_an_empty_message_is_the_type_name():
    assert first_line(TimeoutError()) == "TimeoutError"
    assert first_line(TimeoutError("  \n \n")) == "TimeoutError"


def test_first_line_of_a_non_string_message():
    assert first_line(KeyError("missing")) == "'missing'"
    assert first_line(OSError(2, "No such file or directory")) == "[Errno 2] No such file or directory"


def test_every_error_is_an_hfsoup_error_and_a_builtin_with_a_docstring():
    classes = [
        value for value in vars(errors).values() if isinstance(value, type) and issubclass(value, Exception)
    ]
    assert len(classes) >= 12
    for cls in classes:
        assert issubclass(cls, HfSoupError) and cls.__doc__, cls
        builtins = [
            b
            for b in cls.__mro__
            if b.__module__ == "builtins" and b not in (Exception, BaseException, object)
        ]
        assert builtins or cls is HfSoupError, cls  # `except ValueError` and the like keep working


def test_errors_carry_their_fields():
    assert errors.RepoNotFoundError("gone", repo_id="alice/x").reference == "alice/x"
    assert errors.HubError("down", repo_id="alice/x").repo_id == "alice/x"
    assert errors.IncompatibleIngredientsError("no", report="r").report == "r"
    assert isinstance(errors.RepoNotFoundError("gone"), FileNotFoundError)

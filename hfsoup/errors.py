"""The exceptions hfsoup raises.

Every error a user can cause derives from [`HfSoupError`] and also from the builtin that fits, so
`except ValueError` keeps working for callers who do not know hfsoup. The message of each one is a single
line that names what is wrong and how to fix it; the CLI prints exactly that line.
"""

from __future__ import annotations


class HfSoupError(Exception):
    """Base class of every error hfsoup raises on purpose."""


class InvalidSettingError(HfSoupError, ValueError):
    """A setting is outside its allowed values (an EMA decay, a soup weight, a recipe field...)."""


class IngredientNotFoundError(HfSoupError, FileNotFoundError):
    """An ingredient reference names no local folder and no reachable Hub repository.

    Args:
        reference: the reference as the user wrote it.
    """

    def __init__(self, message: str, reference: str | None = None):
        super().__init__(message)
        self.reference = reference


class UnsafeWeightsError(HfSoupError, ValueError):
    """Weights exist only in a pickle format (`*.bin`, `*.pt`), which hfsoup refuses to load."""

    def __init__(self, message: str, reference: str | None = None):
        super().__init__(message)
        self.reference = reference


class IncompatibleIngredientsError(HfSoupError, ValueError):
    """Ingredients cannot be averaged; `report` holds every problem that was found."""

    def __init__(self, message: str, report: object | None = None):
        super().__init__(message)
        self.report = report


class UnknownNameError(HfSoupError, ValueError):
    """A name looked up in a registry (task, soup method, metric key) does not exist."""


class DatasetError(HfSoupError, ValueError):
    """A dataset cannot be loaded, lacks a column the task needs, or a split is empty or unknown."""


class OutputExistsError(HfSoupError, FileExistsError):
    """The output folder exists already and `--overwrite` was not given."""


class MissingRunsError(HfSoupError, FileNotFoundError):
    """A soup of a sweep's runs was asked for (`--soup-only`) while some runs are not finished; `runs` names them."""

    def __init__(self, message: str, runs: list[str] | None = None):
        super().__init__(message)
        self.runs = runs or []


class RecipeError(HfSoupError, ValueError):
    """A recipe file is missing, not valid YAML, or has a field with a wrong name or value."""


class HubError(HfSoupError, RuntimeError):
    """A Hub operation failed in a way the user can act on.

    Args:
        repo_id: the repository concerned, if any.
    """

    def __init__(self, message: str, repo_id: str | None = None):
        super().__init__(message)
        self.repo_id = repo_id


class RepoNotFoundError(HubError, IngredientNotFoundError):
    """The repository does not exist, or is private and the token cannot see it."""

    def __init__(self, message: str, repo_id: str | None = None):
        HubError.__init__(self, message, repo_id=repo_id)
        self.reference = repo_id


class RevisionNotFoundError(HubError):
    """The branch, tag or commit does not exist in the repository."""


class HubAuthError(HubError, PermissionError):
    """The repository is gated or private and no token, or a rejected token, was given."""


class HubUnreachableError(HubError, ConnectionError):
    """The Hub cannot be reached, or offline mode is on and the files are not cached."""


def first_line(error: BaseException) -> str:
    """The first non-blank line of an exception's message (its type's name if it has none), for one-line errors."""
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)

"""Lazy re-exports (PEP 562): a package names its public API without importing the heavy modules behind it."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of a package whose public names live in its submodules.

    Args:
        package: the package's `__name__`.
        exports: public name -> the submodule defining it, relative to the package (`".ema"`).

    Example:
        ```python
        >>> __getattr__, __dir__ = lazy_exports(__name__, {"ModelEma": ".ema"})
        ```
    """
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        namespace[name] = value  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__

"""The house rules that can be checked mechanically: tests mirror the package, and modules stay small."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hfsoup"
TESTS = ROOT / "tests"
MAX_LINES = 400
# Package `__init__` files that only re-export, and the `python -m hfsoup` entry point, have no logic to test.
RE_EXPORTS_ONLY = {
    "__init__.py",
    "ema/__init__.py",
    "eval/__init__.py",
    "soup/__init__.py",
    "sources/__init__.py",
}
SKIPPED = {
    "__main__.py",
    "eval/metrics/glue/glue.py",
}  # glue.py: the evaluate module, tested through load_metric


def modules() -> list[Path]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative not in RE_EXPORTS_ONLY | SKIPPED:
            found.append(path.relative_to(PACKAGE))
    return found


def mirrors(module: Path) -> list[Path]:
    """`hfsoup/a/b.py` is tested in `tests/a/test_b.py`; a package `a/b/__init__.py` in `tests/a/b/test_b.py` or
    `tests/a/test_b.py`."""
    if module.name != "__init__.py":
        return [TESTS / module.parent / f"test_{module.stem.lstrip('_')}.py"]
    name = f"test_{module.parent.name}.py"
    return [TESTS / module.parent / name, TESTS / module.parent.parent / name]


@pytest.mark.parametrize("module", modules(), ids=str)
def test_every_module_has_its_test_module(module):
    expected = mirrors(module)
    assert any(path.is_file() for path in expected), f"hfsoup/{module} has no test module {expected[0]}"


@pytest.mark.parametrize("module", modules(), ids=str)
def test_no_module_is_over_400_lines(module):
    lines = len((PACKAGE / module).read_text().splitlines())
    assert lines <= MAX_LINES, f"hfsoup/{module} has {lines} lines; split it (DESIGN.md: one idea per module)"


def test_test_file_names_are_unique():
    # pytest imports test modules by basename (no __init__.py in tests/): two equal names would clash.
    names = [path.name for path in TESTS.rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)

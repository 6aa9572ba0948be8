"""The house rules that can be checked mechanically: tests mirror the package, modules and functions stay small,
the top of the package holds the shared bottom layer only, and the README's map of the house is the tree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hfsoup"
TESTS = ROOT / "tests"
MAX_LINES = 400
MAX_TOP_MODULES = 8  # DESIGN.md: `__init__`, `__main__`, `_lazy` and at most five shared bottom modules
MAX_FUNCTION_LINES = 60  # lines of code, the docstring, blank lines and comments aside
# Package `__init__` files that only re-export, and the `python -m hfsoup` entry point, have no logic to test.
RE_EXPORTS_ONLY = {
    "__init__.py",
    "cli/__init__.py",
    "finetune/__init__.py",
    "merge/__init__.py",
    "publish/__init__.py",
    "recipe/__init__.py",
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
    """`hfsoup/a/b.py` is tested in `tests/a/test_b.py` (or `tests/a/test_a_b.py`, where another folder has a
    `b.py` too: pytest needs unique test file names); a package `a/b/__init__.py` in `tests/a/b/test_b.py` or
    `tests/a/test_b.py`."""
    if module.name != "__init__.py":
        stem = module.stem.lstrip("_")
        return [
            TESTS / module.parent / f"test_{stem}.py",
            TESTS / module.parent / f"test_{module.parent.name}_{stem}.py",
        ]
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


def test_the_top_of_the_package_holds_at_most_8_modules():
    top = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, f"{len(top)} modules at the top of hfsoup/: {top}; give them a folder"


def _code_lines(function: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> int:
    body = function.body
    if (
        isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        body = body[1:]  # the docstring
    if not body:
        return 0
    text = lines[body[0].lineno - 1 : function.end_lineno]
    return sum(1 for line in text if line.strip() and not line.strip().startswith("#"))


@pytest.mark.parametrize("module", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_function_is_over_60_lines_of_code(module):
    source = module.read_text()
    lines = source.splitlines()
    long = [
        f"{node.name} ({count} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (count := _code_lines(node, lines)) > MAX_FUNCTION_LINES
    ]
    assert not long, f"hfsoup/{module.relative_to(PACKAGE)}: {long} is a stage waiting for a name: split it"


def _readme_map() -> set[str]:
    """The modules and folders the README's map of the house names, as paths under `hfsoup/`."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## The house", 1)[1].split("```", 2)[1]
    return set(re.findall(r"\b([a-z_]+(?:/|\.py))", block)) - {"hfsoup/"}


def test_the_readme_map_of_the_house_is_the_tree():
    named = _readme_map()
    folders = {f"{path.name}/" for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    top = {path.name for path in PACKAGE.glob("*.py")}
    assert folders | top <= named, f"the README's map leaves out {sorted((folders | top) - named)}"
    inner = {path.name for folder in PACKAGE.iterdir() if folder.is_dir() for path in folder.glob("*.py")}
    inner |= {f"{path.name}/" for path in PACKAGE.glob("*/*") if (path / "__init__.py").is_file()}
    unknown = named - folders - top - inner
    assert not unknown, f"the README's map names {sorted(unknown)}, which are not in hfsoup/"


# Layers, top to bottom (pyproject.toml's contract): a call from a lower layer into a higher one is a climb.
LAYERS = {
    "cli": 7,
    "finetune": 6,
    "merge": 5,
    "publish": 4,
    "recipe": 3,
    "soup": 2,
    "eval": 2,
    "ema": 2,
    "sources": 1,
}


def _layer(module: str) -> int:
    return LAYERS.get(module.split(".")[1] if module.count(".") else "", 0)


def test_a_merge_from_the_cli_to_the_written_soup_climbs_back_up_a_layer_at_most_3_times(
    capsys, tmp_path, tiny_stsb_dirs, glue_hub_dir
):
    # STS-B's score allows no early stop, so greedy scores each candidate through a function the merge layer
    # hands it: the one callback that climbs (soup -> merge), which shows the trace sees climbs at all.
    import sys

    from cli_helpers import QUICK_SPLITS

    from hfsoup.cli import main

    climbs: set[tuple[str, str]] = set()

    def profile(frame, event, arg):
        if event != "call" or frame.f_code.co_name == "<module>":  # imports run module code: not a climb
            return
        callee = frame.f_globals.get("__name__", "")
        if not callee.startswith("hfsoup."):
            return
        caller = frame.f_back
        while caller is not None and not caller.f_globals.get("__name__", "").startswith("hfsoup."):
            caller = caller.f_back
        if caller is not None and _layer(callee) > _layer(caller.f_globals["__name__"]):
            climbs.add(
                (
                    f"{caller.f_globals['__name__']}.{caller.f_code.co_name}",
                    f"{callee}.{frame.f_code.co_name}",
                )
            )

    sys.setprofile(profile)
    try:
        argv = [*map(str, tiny_stsb_dirs), "--task", "stsb", "--dataset", str(glue_hub_dir), *QUICK_SPLITS]
        code = main(["merge", *argv, "--output-dir", str(tmp_path / "soup")])
    finally:
        sys.setprofile(None)
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "soup" / "soup.yaml").is_file()
    assert 1 <= len(climbs) <= 3, sorted(climbs)
    assert ("hfsoup.soup.methods.greedy.greedy_soup", "hfsoup.merge.scored.<lambda>") in climbs

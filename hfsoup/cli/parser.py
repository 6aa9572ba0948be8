"""The `hfsoup` command line: its commands, their flags and their help (argparse)."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import typing
from importlib.metadata import version

__all__ = ["build_parser", "recipe_flags"]


# Merge flags are derived from `MergeRecipe`'s fields: a flag per field, its type from the field's type, its help
# from the field's docstring. These fields have no flag (the positional models; what a soup.yaml records), and
# these flags are spelled otherwise than their field.
_NOT_FLAGS = ("models", "content_hashes", "learned_coefficients")
_SPELLED = {"text_columns": "--text-column", "learned_learning_rate": "--learned-lr"}
_METAVARS = {"text_columns": "COLUMN", "weights": "WEIGHT"}


def recipe_flags() -> tuple[str, ...]:
    """The `MergeRecipe` fields that `hfsoup merge` takes as flags, in the recipe's order."""
    from ..recipe.merge import MergeRecipe

    return tuple(f.name for f in dataclasses.fields(MergeRecipe) if f.name not in _NOT_FLAGS)


def _field_docs(cls) -> dict[str, str]:
    """Each field's text in a class docstring's `Args:` section, on one line."""
    docs, name = {}, None
    section = inspect.getdoc(cls).split("Args:", 1)[1].split("Raises:", 1)[0]
    for line in section.splitlines():
        match = re.match(r"^    (\w+): (.*)", line)
        if match:
            name, docs[match[1]] = match[1], match[2]
        elif name and line.strip():
            docs[name] += " " + line.strip()
    return docs


def _add_recipe_flags(parser) -> None:
    from ..recipe.merge import MergeRecipe

    hints, docs = typing.get_type_hints(MergeRecipe), _field_docs(MergeRecipe)
    for name in recipe_flags():
        kinds = [kind for kind in typing.get_args(hints[name]) or (hints[name],) if kind is not type(None)]
        flag = _SPELLED.get(name, "--" + name.replace("_", "-"))
        text = docs[name].replace("%", "%%")
        if kinds[0] is bool:
            parser.add_argument(flag, dest=name, action="store_true", default=None, help=text)
        elif typing.get_origin(kinds[0]) is list:
            (item,) = typing.get_args(kinds[0])
            parser.add_argument(flag, dest=name, type=item, nargs="+", metavar=_METAVARS.get(name), help=text)
        else:
            parser.add_argument(flag, dest=name, type=kinds[0], help=text)


def _merge_parser(sub) -> None:
    merge = sub.add_parser("merge", help="check, score and soup fine-tuned models; write or push the soup")
    merge.add_argument(
        "models", nargs="*", help="ingredients: model folders, user/name or user/name@revision"
    )
    _add_recipe_flags(merge)
    merge.add_argument(
        "--trust-remote-metric",
        action="store_true",
        help="allow a --metric from the Hub (a script that runs on this machine)",
    )
    merge.add_argument(
        "--device",
        default="auto",
        help="where to score: auto (default: CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps; under "
        "accelerate launch or torchrun each process takes its own",
    )
    merge.add_argument(
        "--max-shard-size",
        type=lambda size: int(size) if size.isdigit() else size,
        help="largest weight file (bytes, or e.g. 500MB, 5GB); a bigger soup is sharded (default 50GB, as "
        "save_pretrained)",
    )
    merge.add_argument("--recipe", help="a recipe YAML or a soup.yaml to replay; flags given override it")
    merge.add_argument("--output-dir", help="where to write the soup folder")
    merge.add_argument("--overwrite", action="store_true", help="replace an existing --output-dir")
    merge.add_argument(
        "--allow-independent-heads",
        action="store_true",
        help="make a uniform or weighted soup even of heads that look independently initialized in each run",
    )
    _custom_code_flag(merge)
    _hub_flags(merge, push_flag=True)


def _custom_code_flag(parser) -> None:
    parser.add_argument(
        "--allow-custom-code",
        action="store_true",
        help="accept models whose config declares custom code (auto_map); the code is never run or copied",
    )


def _hub_flags(parser, *, push_flag: bool) -> None:
    if push_flag:
        parser.add_argument("--push-to-hub", metavar="REPO", help="push the soup to this Hub repository")
    parser.add_argument("--private", action="store_true", help="create the Hub repository as private")
    parser.add_argument("--revision", help="the branch to push to (created if missing)")
    parser.add_argument("--commit-message", help="the commit message of the push")
    parser.add_argument("--token", help="a Hub token (default: HF_TOKEN or the saved login); never recorded")


def _finetune_parser(sub) -> None:
    finetune = sub.add_parser(
        "finetune", help="fine-tune a sweep of runs with EMA from a recipe (recipes/*.yaml), then soup them"
    )
    finetune.add_argument("recipe", help="the sweep's YAML recipe (see recipes/)")
    finetune.add_argument("--output-dir", help="where the runs go (default: the recipe's, or runs/<task>)")
    finetune.add_argument(
        "--dataset", help="Hub dataset id, local folder or data file (overrides the recipe)"
    )
    finetune.add_argument("--base", help="the base model to fine-tune (overrides the recipe)")
    finetune.add_argument(
        "--no-soup", action="store_true", help="train the runs only, even if the recipe soups"
    )
    finetune.add_argument("--overwrite", action="store_true", help="replace an existing soup folder")
    finetune.add_argument(
        "--shard",
        metavar="K/N",
        help="train only shard K of N of the runs (fixed by their keys), then stop without souping; `slurm` "
        "reads SLURM_ARRAY_TASK_ID/_MIN/_COUNT, `env/N` Kubernetes' JOB_COMPLETION_INDEX",
    )
    finetune.add_argument(
        "--allow-independent-heads",
        action="store_true",
        help="let a uniform or weighted soup average heads that each run drew itself (head_seed: null)",
    )
    finetune.add_argument(
        "--soup-only", action="store_true", help="train nothing: soup the finished runs (all must be)"
    )
    finetune.add_argument(
        "--allow-missing",
        action="store_true",
        help="with --soup-only, soup the finished runs even if some are missing (the card names them)",
    )
    finetune.add_argument(
        "--stale-after",
        type=float,
        metavar="SECONDS",
        help="take over another host's claim on a run once its lock file was not touched for this long "
        "(default 1800; a claim of a dead process on this host is taken over at once)",
    )
    finetune.add_argument(
        "--token", help="a Hub token (default: HF_TOKEN or the saved login); never recorded"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hfsoup",
        description="Weight averaging for Hugging Face models.",
        epilog="Exit codes: 0 success, 1 user error (e.g. a missing model or incompatible ingredients), "
        "2 usage error, 3 internal error (a bug), 130 interrupted, 143 terminated (SIGTERM). With --json, merge and inspect print one "
        'JSON document on stdout, also when they fail ({"ok": false, "error": {...}}), and logs on stderr.',
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('hfsoup')}")
    parser.set_defaults(json=False)  # `--json` is a flag of merge and inspect
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs and full tracebacks")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="warnings and results only, no progress bars"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _merge_parser(sub)
    _finetune_parser(sub)
    inspect = sub.add_parser("inspect", help="report whether models can be averaged, without averaging")
    inspect.add_argument("models", nargs="+", help="model folders, user/name or user/name@revision")
    inspect.add_argument(
        "--base", help="the common base: with --weights, adds distances and angles of the updates"
    )
    inspect.add_argument(
        "--weights",
        action="store_true",
        help="also read the weights (downloads them): NaN/Inf and common-base distance checks, and the geometry",
    )
    inspect.add_argument("--metadata-only", action="store_true", help=argparse.SUPPRESS)  # the default now
    _custom_code_flag(inspect)
    inspect.add_argument("--token", help="a Hub token; never recorded")
    push = sub.add_parser(
        "push", help="push a soup folder written by `hfsoup merge` to the Hub in one commit"
    )
    push.add_argument("output_dir", help="the soup folder written by `hfsoup merge`")
    push.add_argument("repo_id", help="the Hub repository, user/name")
    _hub_flags(push, push_flag=False)
    for name in ("merge", "inspect", "finetune"):
        sub.choices[name].add_argument(
            "--json", action="store_true", help="print one JSON document on stdout; logs go to stderr"
        )
    return parser

"""The `hfsoup` command: parse, validate, run, print. The only place that prints or exits.

Exit codes: 0 success, 1 a user error (one line on stderr; `-v` for the traceback), 2 a usage error
(argparse), 3 an internal error (a bug: please report it), 130 interrupted. Nothing heavy is imported before
a command runs, so `hfsoup --help`, `hfsoup --version` and usage errors answer at once.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import shutil
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

from .errors import HfSoupError, HubError, IncompatibleIngredientsError, IngredientNotFoundError, RecipeError
from .result import BEST, ENSEMBLE, SOUP, UNIFORM, MergeResult

EXIT_USER_ERROR = 1
EXIT_INTERNAL_ERROR = 3
EXIT_INTERRUPTED = 130
SECRET_FLAGS = ("--token",)


def _merge_parser(sub) -> None:
    merge = sub.add_parser("merge", help="check, score and soup fine-tuned models; write or push the soup")
    merge.add_argument(
        "models", nargs="*", help="ingredients: model folders, user/name or user/name@revision"
    )
    merge.add_argument("--task", help="GLUE task: cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli")
    merge.add_argument(
        "--method",
        help="soup method: greedy (default), uniform, weighted, or exhaustive (the best uniform soup of any "
        "subset, at most 12 models)",
    )
    merge.add_argument(
        "--weights", type=float, nargs="+", help="one weight per model, with --method weighted"
    )
    merge.add_argument("--dataset", help="Hub dataset id, local folder or data file (default nyu-mll/glue)")
    merge.add_argument(
        "--selection-split", help="split the soup is chosen on (default: a seeded half of validation)"
    )
    merge.add_argument("--report-split", help="split the soup is reported on (default: the other half)")
    merge.add_argument("--seed", type=int, help="seed of the default validation halves (default 0)")
    merge.add_argument("--metric", help="a shipped metric (glue) or the path of a local evaluate module")
    merge.add_argument(
        "--metric-key", help="the metric key selection maximizes (default: the GLUE leaderboard's)"
    )
    merge.add_argument(
        "--trust-remote-metric",
        action="store_true",
        help="allow a --metric from the Hub (a script that runs on this machine)",
    )
    merge.add_argument("--base", help="the common base model, for the compatibility report")
    merge.add_argument("--batch-size", type=int, help="scoring batch size (default 64)")
    merge.add_argument("--max-length", type=int, help="longest tokenized input (default 128)")
    merge.add_argument(
        "--device",
        default="auto",
        help="where to score: auto (default: CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps; under "
        "accelerate launch or torchrun each process takes its own",
    )
    merge.add_argument(
        "--dtype",
        help="dtype of the scoring passes: float32 (default), bfloat16 or float16 (averaging is float32)",
    )
    merge.add_argument(
        "--output-dtype",
        help="dtype the soup is saved in: float32, bfloat16 or float16 (default: the models')",
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hfsoup",
        description="Weight averaging for Hugging Face models.",
        epilog="Exit codes: 0 success, 1 user error (e.g. a missing model or incompatible ingredients), "
        "2 usage error, 3 internal error (a bug), 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('hfsoup')}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs and full tracebacks")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="warnings and results only, no progress bars"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _merge_parser(sub)
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
    return parser


RECIPE_FLAGS = (
    "task",
    "method",
    "weights",
    "dataset",
    "selection_split",
    "report_split",
    "seed",
    "metric",
    "metric_key",
    "base",
    "batch_size",
    "max_length",
    "dtype",
    "output_dtype",
)


def _is_secret_flag(arg: str) -> bool:
    """Whether `arg` is a secret flag, spelled out or abbreviated as argparse accepts (`--tok`, `--tok=X`)."""
    flag = arg.split("=", 1)[0]
    return len(flag) > 2 and flag.startswith("--") and any(secret.startswith(flag) for secret in SECRET_FLAGS)


def public_command(argv: list[str]) -> str:
    """The command line as typed, without secret flags (`--token`) and their values, for cards and logs."""
    shown, hide_next = [], False
    for arg in argv:
        if hide_next:
            hide_next = False
        elif _is_secret_flag(arg):
            hide_next = "=" not in arg
        else:
            shown.append(arg)
    return "hfsoup " + shlex.join(shown)


def _recipe(args):
    from .recipe import MergeRecipe, load_recipe

    flags = {field: getattr(args, field) for field in RECIPE_FLAGS}
    if args.models:
        flags["models"] = args.models
    if args.recipe:
        return load_recipe(args.recipe, **flags)
    if not args.task:
        raise RecipeError("--task is required (e.g. --task mrpc), unless --recipe gives it.")
    return MergeRecipe(**{key: value for key, value in flags.items() if value is not None})


def _merge(args) -> None:
    recipe = _recipe(args)
    from .pipeline import run_merge
    from .processes import Processes

    processes = Processes.from_environment(args.device)
    if not processes.is_main:  # launched with several processes: the main one logs, prints, writes and pushes
        from huggingface_hub.utils import disable_progress_bars

        logging.getLogger("hfsoup").setLevel(logging.ERROR)
        disable_progress_bars()
    output = args.output_dir
    scratch = None
    if output is None and args.push_to_hub and processes.is_main:
        scratch = Path(tempfile.mkdtemp(prefix="hfsoup-"))
        output = scratch / "soup"
    try:
        merge = run_merge(
            recipe,
            output_dir=output,
            overwrite=args.overwrite,
            token=args.token,
            command=args.command_line,
            repo_id=args.push_to_hub,
            progress=not args.quiet,
            trust_remote_metric=args.trust_remote_metric,
            allow_custom_code=args.allow_custom_code,
            allow_independent_heads=args.allow_independent_heads,
            processes=processes,
            max_shard_size=args.max_shard_size,
        )
        if not processes.is_main:
            return
        print(format_scores(merge.result))
        if merge.output_dir is None:
            print("No --output-dir given: nothing was written.")
            return
        if scratch is None:
            print(f"Soup written to {merge.output_dir}")
        if args.push_to_hub:
            try:
                _push(merge.output_dir, args.push_to_hub, args)
            except HubError:
                scratch = None  # the error names the soup in it, for `hfsoup push`: keep it
                raise
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        processes.close()


def _push(folder, repo_id: str, args) -> None:
    from .sources import push_folder

    if not Path(folder).is_dir():
        raise IngredientNotFoundError(
            f"No soup folder at {folder}: give the --output-dir of an `hfsoup merge`.", reference=str(folder)
        )
    if not (Path(folder) / "soup.yaml").is_file():
        raise RecipeError(
            f"{folder} has no soup.yaml, so it was not written by `hfsoup merge`; hfsoup pushes only soups "
            "(use `hf upload` for other folders)."
        )
    try:
        commit = push_folder(
            folder,
            repo_id,
            token=args.token,
            private=args.private,
            revision=args.revision,
            commit_message=args.commit_message,
        )
    except HubError as error:
        raise HubError(
            f"{error} The soup is complete in {folder}: retry with `hfsoup push {folder} {repo_id}`.",
            repo_id=repo_id,
        ) from error
    print(f"Pushed to {repo_id}: {commit.commit_url}")


def _inspect(args) -> None:
    from .soup import check_compatibility, load_ingredient, load_ingredients, pairwise_geometry

    ingredients = load_ingredients(args.models, token=args.token)
    base = load_ingredient(args.base, token=args.token) if args.base else None
    report = check_compatibility(
        ingredients, base=base, check_values=args.weights, allow_custom_code=args.allow_custom_code
    )
    print(report.to_text())
    if not args.weights:
        print(
            "\nOnly metadata was read (configs, tokenizers, safetensors headers). Add --weights to also check "
            "for NaN/Inf and a common base"
            + (" and to measure the geometry of the updates" if base else "")
            + " (this reads, and for Hub models downloads, every weight)."
        )
    elif base is not None and report.ok():
        print()
        print(pairwise_geometry(ingredients, base).to_text())
    if not report.ok():
        raise IncompatibleIngredientsError(report.summary(), report=report)


def format_scores(result: MergeResult) -> str:
    """The final table: every ingredient and candidate, with its score on each split, then any top subsets."""
    roles = list(result.splits)
    rows = [(f"{'*' if r.selected else ' '} {r.name}", r.scores) for r in result.ingredients]
    labels = {
        BEST: "best ingredient",
        UNIFORM: "uniform soup",
        ENSEMBLE: "logit ensemble",
        SOUP: f"{result.method} soup",
    }
    rows += [
        (f"  {label}", result.candidates[key]) for key, label in labels.items() if key in result.candidates
    ]
    width = max(len(name) for name, _ in rows) + 2
    header = "".join(f"{role:>14}" for role in roles)
    lines = [f"Task {result.task}; score = {result.score_key}; * = in the soup", f"{'':{width}}{header}"]
    for name, scores in rows:
        lines.append(f"{name:{width}}" + "".join(f"{scores[role]['score']:>14.4f}" for role in roles))
    if result.top_subsets:
        subsets = 2 ** len(result.ingredients) - 1
        lines.append(f"Best of {subsets} subsets by selection score (the first is the soup):")
        for rank, subset in enumerate(result.top_subsets, 1):
            names = ", ".join(f"#{i} {result.ingredients[i].name}" for i in subset.indices)
            lines.append(f"  {rank}. {subset.score:.4f}  {names}")
    return "\n".join(lines)


COMMANDS = {
    "merge": _merge,
    "inspect": _inspect,
    "push": lambda args: _push(args.output_dir, args.repo_id, args),
}


def main(argv: list[str] | None = None) -> int:
    """Run the `hfsoup` command; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    args = None
    try:
        args = build_parser().parse_args(argv)
        args.command_line = public_command(argv)
        level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("hfsoup").setLevel(level)
        if args.quiet:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
        COMMANDS[args.command](args)
    except IncompatibleIngredientsError as error:
        if args.command == "merge" and error.report is not None:
            print(error.report.to_text(), file=sys.stderr)
        return _fail(error, args)
    except HfSoupError as error:
        return _fail(error, args)
    except KeyboardInterrupt:
        print("hfsoup: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if args is None or args.verbose:
            raise
        print(
            f"hfsoup: internal error: {type(error).__name__}: {error}; please report it, with the output of the "
            "same command run with -v",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR
    return 0


def _fail(error: HfSoupError, args) -> int:
    if args.verbose:
        raise error
    print(f"hfsoup: error: {error}", file=sys.stderr)
    return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())

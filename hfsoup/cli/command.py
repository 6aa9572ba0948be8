"""The `hfsoup` command: parse, validate, run, print. The only place that prints or exits.

Exit codes: 0 success, 1 a user error (one line on stderr; `-v` for the traceback), 2 a usage error
(argparse), 3 an internal error (a bug: please report it), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM,
handled as Ctrl-C: staging removed). Nothing heavy is imported before a command runs, so `hfsoup --help`,
`hfsoup --version` and usage errors answer at once. Under a launcher only rank 0 prints the JSON document.

With `--json`, `merge` and `inspect` print one JSON document on stdout, anything else on stderr; a failure
also prints `{"ok": false, "error": {"type", "message", "exit_code"}, ...}` there, so a script always has one
document to read, except after a usage error (exit 2), when the arguments were not understood.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import signal
import sys
import threading
from contextlib import nullcontext, redirect_stdout

from ..errors import HfSoupError, IncompatibleIngredientsError, InvalidSettingError
from .output import format_runs, format_scores, print_json
from .parser import build_parser, recipe_flags

EXIT_USER_ERROR = 1
EXIT_INTERNAL_ERROR = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as shells report a process ended by it
SECRET_FLAGS = ("--token",)


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
    """The recipe the merge flags and `--recipe` describe: a `MergeRecipe`, or a sweep if it trains its ingredients."""
    from ..recipe import MergeRecipe, load_merge_or_sweep

    flags = {field: getattr(args, field) for field in recipe_flags()}
    if args.models:
        flags["models"] = args.models
    if args.recipe:
        return load_merge_or_sweep(args.recipe, output_dir=args.output_dir, **flags)
    return MergeRecipe(**{key: value for key, value in flags.items() if value is not None})


def _merge(args) -> dict:
    recipe = _recipe(args)
    from ..eval.processes import Processes
    from ..publish import soup_folder

    # launched with several processes: the main one logs, prints, writes and pushes
    processes = _launched(Processes.from_environment(args.device))
    push = bool(args.push_to_hub) and processes.is_main
    try:
        with soup_folder(args.output_dir, push=push) as output:
            merge = _run_merge(recipe, output, args, processes)
            if not processes.is_main:
                return None
            if not args.json:
                print(format_scores(merge.result))
                if merge.output_dir is None:
                    print("No --output-dir given: nothing was written.")
                elif args.output_dir is not None:
                    print(f"Soup written to {merge.output_dir}")
            commit_url = (
                _push(merge.output_dir, args.push_to_hub, args) if merge.output_dir and push else None
            )
    finally:
        processes.close()
    return {
        "command": "merge",
        "ok": True,
        "output_dir": str(merge.output_dir) if merge.output_dir is not None and args.output_dir else None,
        "pushed_to": {"repo_id": args.push_to_hub, "commit_url": commit_url} if commit_url else None,
        "compatibility": merge.report.to_dict(),
        "result": merge.result.to_dict(),
    }


def _run_merge(recipe, output, args, processes):
    """A merge of the recipe's models, or, for a recipe that trains them, the sweep's soup."""
    options = dict(
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
    from ..recipe import SweepRecipe

    if isinstance(recipe, SweepRecipe):
        from ..finetune import run_finetune

        recipe.soup_output_dir = str(output) if output is not None else None
        return run_finetune(recipe, write_soup=output is not None, **options).merge
    from ..merge import run_merge

    return run_merge(recipe, output_dir=output, **options)


def _finetune(args) -> dict | None:
    from ..eval.processes import Processes
    from ..finetune import Shard, run_finetune
    from ..recipe import load_sweep

    if args.allow_missing and not args.soup_only:
        raise InvalidSettingError("--allow-missing goes with --soup-only; add --soup-only, or drop it.")
    shard = Shard.parse(args.shard) if args.shard else None
    if shard and args.soup_only:
        raise InvalidSettingError("--shard trains a share of the runs and --soup-only trains none; pass one.")
    if args.stale_after is not None and args.stale_after <= 0:
        raise InvalidSettingError(
            f"--stale-after must be a number of seconds above 0, got {args.stale_after:g}."
        )
    sweep = load_sweep(args.recipe, dataset=args.dataset, base=args.base, output_dir=args.output_dir)
    if args.no_soup:
        sweep.soup = None
    processes = _launched(Processes.from_environment("auto"))
    try:
        done = run_finetune(
            sweep,
            token=args.token,
            command=args.command_line,
            progress=not args.quiet,
            overwrite=args.overwrite,
            shard=shard,
            soup_only=args.soup_only,
            allow_missing=args.allow_missing,
            processes=processes,
            allow_independent_heads=args.allow_independent_heads,
            **({"stale_after": args.stale_after} if args.stale_after else {}),
        )
    finally:
        processes.close()
    if not processes.is_main:
        return None
    print(format_runs(done.runs, sweep.runs_dir))
    if done.missing:
        print(f"Not finished here ({len(done.missing)}): {', '.join(done.missing)}")
    if done.merge is not None:
        print(format_scores(done.merge.result))
        print(f"Soup written to {done.merge.output_dir}")
    elif done.soup_by:
        print(f"Soup of {sweep.soup_dir}: made by {done.soup_by}")
    return {
        "command": "finetune",
        "ok": True,
        "runs": [dict(record, folders=folders) for record, folders in done.runs],
        "missing": done.missing,
        "soup": None
        if done.merge is None
        else {"output_dir": str(done.merge.output_dir), "result": done.merge.result.to_dict()},
        "soup_by": done.soup_by,
    }


def _launched(processes):
    """`processes`, with this one quiet unless it is the main one (a launcher's others log errors only)."""
    if not processes.is_main:
        from huggingface_hub.utils import disable_progress_bars

        logging.getLogger("hfsoup").setLevel(logging.ERROR)
        disable_progress_bars()
    return processes


def _push(folder, repo_id: str, args) -> str:
    """Push a soup folder; returns the commit's URL (printed unless `--json`)."""
    from ..publish import push_soup

    commit_url = push_soup(
        folder,
        repo_id,
        token=args.token,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
    )
    if not args.json:
        print(f"Pushed to {repo_id}: {commit_url}")
    return commit_url


def _inspect(args) -> dict:
    from ..soup import check_compatibility, load_ingredient, load_ingredients, pairwise_geometry

    ingredients = load_ingredients(args.models, token=args.token)
    base = load_ingredient(args.base, token=args.token) if args.base else None
    report = check_compatibility(
        ingredients, base=base, check_values=args.weights, allow_custom_code=args.allow_custom_code
    )
    geometry = pairwise_geometry(ingredients, base) if args.weights and base and report.ok() else None
    if not args.json:
        print(report.to_text())
        if not args.weights:
            print(
                "\nOnly metadata was read (configs, tokenizers, safetensors headers). Add --weights to also "
                "check for NaN/Inf and a common base"
                + (" and to measure the geometry of the updates" if base else "")
                + " (this reads, and for Hub models downloads, every weight)."
            )
        elif geometry is not None:
            print()
            print(geometry.to_text())
    if not report.ok():
        raise IncompatibleIngredientsError(report.summary(), report=report)
    return {
        "command": "inspect",
        "ok": True,
        "compatibility": report.to_dict(),
        "geometry": dataclasses.asdict(geometry) if geometry is not None else None,
    }


COMMANDS = {
    "merge": _merge,
    "finetune": _finetune,
    "inspect": _inspect,
    "push": lambda args: _push(args.output_dir, args.repo_id, args),
}


def main(argv: list[str] | None = None) -> int:
    """Run the `hfsoup` command; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    args = None
    previous = (
        signal.signal(signal.SIGTERM, _terminate)
        if threading.current_thread() is threading.main_thread()
        else None
    )
    try:
        args = build_parser().parse_args(argv)
        args.command_line = public_command(argv)
        level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("hfsoup").setLevel(level)
        if args.quiet:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
        # With --json, stdout is the document's alone: whatever else is printed meanwhile goes to stderr.
        with redirect_stdout(sys.stderr) if args.json else nullcontext():
            document = COMMANDS[args.command](args)
        if args.json and _is_main_process():
            print_json(document)
    except IncompatibleIngredientsError as error:
        if args.command == "merge" and error.report is not None:
            print(error.report.to_text(), file=sys.stderr)
        return _fail(error, args)
    except HfSoupError as error:
        return _fail(error, args)
    except Terminated as stop:
        print("hfsoup: terminated (SIGTERM); nothing was left half-written", file=sys.stderr)
        _print_json_error(args, stop, "terminated", EXIT_TERMINATED)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("hfsoup: interrupted", file=sys.stderr)
        _print_json_error(args, KeyboardInterrupt(), "interrupted", EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except Exception as error:
        if args is None or args.verbose:
            raise
        print(
            f"hfsoup: internal error: {type(error).__name__}: {error}; please report it, with the output of the "
            "same command run with -v",
            file=sys.stderr,
        )
        _print_json_error(args, error, f"{type(error).__name__}: {error}", EXIT_INTERNAL_ERROR)
        return EXIT_INTERNAL_ERROR
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so every staging folder is removed as for Ctrl-C."""


def _terminate(signum, frame) -> None:
    raise Terminated


def _is_main_process() -> bool:
    """Whether this is the process that prints: the only one, or rank 0 of those a launcher started."""
    return int(os.environ.get("RANK", "0")) == 0


def _fail(error: HfSoupError, args) -> int:
    if args.verbose:
        raise error
    print(f"hfsoup: error: {error}", file=sys.stderr)
    _print_json_error(args, error, str(error), EXIT_USER_ERROR)
    return EXIT_USER_ERROR


def _print_json_error(args, error: BaseException, message: str, code: int) -> None:
    """With `--json`, the failure as the one JSON document on stdout (the one-line error is on stderr)."""
    if args is None or not args.json or not _is_main_process():
        return
    fields = {"type": type(error).__name__, "message": message, "exit_code": code}
    document = {"command": args.command, "ok": False, "error": fields}
    if getattr(error, "report", None) is not None:  # IncompatibleIngredientsError: the findings
        document["compatibility"] = error.report.to_dict()
    print_json(document)


if __name__ == "__main__":
    sys.exit(main())

"""What the CLI prints: the score table of a merge, the runs of a sweep, and JSON documents."""

from __future__ import annotations

import json
from pathlib import Path

from ..result import AVERAGED_HEAD, BEST, ENSEMBLE, SOUP, UNIFORM, MergeResult

__all__ = ["format_runs", "format_scores", "print_json"]


def format_scores(result: MergeResult) -> str:
    """The final table: every ingredient and candidate, with its score on each split, then any top subsets.

    A plain merge has no score: the table lists each ingredient's weight in the soup.
    """
    if result.task is None:
        lines = [
            f"Plain {result.method} merge, unevaluated (no --task or --dataset): weight of each ingredient"
        ]
        lines += [f"  {record.weight:.4f}  {record.name}" for record in result.ingredients]
        return "\n".join(lines)
    roles = list(result.splits)
    rows = [(f"{'*' if r.selected else ' '} {r.name}", r.scores) for r in result.ingredients]
    labels = {
        BEST: "best ingredient",
        UNIFORM: "uniform soup",
        ENSEMBLE: "logit ensemble",
        AVERAGED_HEAD: f"{result.method} soup, averaged head",
        SOUP: f"{result.method} soup" + (", head refitted" if result.refit_head else ""),
    }
    rows += [
        (f"  {label}", result.candidates[key]) for key, label in labels.items() if key in result.candidates
    ]
    width = max(len(name) for name, _ in rows) + 2
    header = "".join(f"{role:>14}" for role in roles)
    lines = [f"Task {result.task}; score = {result.score_key}; * = in the soup", f"{'':{width}}{header}"]
    for name, scores in rows:
        lines.append(f"{name:{width}}" + "".join(f"{scores[role]['score']:>14.4f}" for role in roles))
    if result.gain:
        lines.append(describe_gain(result.gain))
    if result.rates:
        from ..publish.tables import describe_rates  # not at the top: `hfsoup --help` loads no heavy library

        lines.append(describe_rates(result.rates))
    for split, count in result.shared_rows.items():
        lines.append(f"Not held out: {count} rows of the report split {split!r} are selection rows too.")
    if result.top_subsets:
        subsets = 2 ** len(result.ingredients) - 1
        lines.append(f"Best of {subsets} subsets by selection score (the first is the soup):")
        for rank, subset in enumerate(result.top_subsets, 1):
            names = ", ".join(f"#{i} {result.ingredients[i].name}" for i in subset.indices)
            lines.append(f"  {rank}. {subset.score:.4f}  {names}")
    return "\n".join(lines)


def describe_gain(gain: dict) -> str:
    """The soup minus the best ingredient on the report split, with its paired bootstrap interval, as one line."""
    level = round(gain["level"] * 100)
    return (
        f"Soup minus best ingredient on {gain['split']}: {gain['soup_minus_best']:+.4f} ({level}% paired bootstrap "
        f"interval {gain['low']:+.4f} to {gain['high']:+.4f}, {gain['resamples']} resamples, seed {gain['seed']})"
    )


def format_runs(runs: list[tuple[dict, list[str]]], folder: Path) -> str:
    """The runs of a sweep, with the validation score of each of their weights (raw, EMA, epochs)."""
    kinds = list(runs[0][0]["scores"])
    width = max(len(record["name"]) for record, _ in runs) + 2
    lines = [f"{len(runs)} runs in {folder}; validation score of each run's weights:"]
    lines.append(f"  {'run':{width}}" + "".join(f"{kind:>10}" for kind in kinds))
    for record, _folders in runs:
        scores = "".join(f"{record['scores'][kind]['score']:>10.4f}" for kind in kinds)
        lines.append(f"  {record['name']:{width}}{scores}")
    return "\n".join(lines)


def print_json(document: dict) -> None:
    """Print `document` on stdout as strict JSON: a NaN or infinite score becomes `null`."""
    plain = json.loads(json.dumps(document), parse_constant=lambda constant: None)
    print(json.dumps(plain, indent=2))

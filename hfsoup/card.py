"""The model card (`README.md`) and the `soup.yaml` of a merge, rendered from its [`MergeResult`] alone.

The card's metadata is a `huggingface_hub.ModelCardData`: the Hub ingredients *in the soup* as `base_model`
with `base_model_relation: merge` (an ingredient the soup rejected is not part of it), the license the
ingredients share, and the soup's scores on the held-out report split(s) as `EvalResult`s, so the
Hub lists the soup under each ingredient's merges and shows its scores. The body explains what was averaged,
how it was chosen and how it compares. `soup.yaml` holds the same facts as plain data, plus the recipe that
`hfsoup merge --recipe soup.yaml` replays.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .card_tables import coefficients_section, number, subsets_section, table
from .eval.tasks import HALVES, get_task
from .result import BEST, ENSEMBLE, SOUP, SOUP_FORMAT, UNIFORM, MergeResult, Scores
from .soup.methods.base import SOUPS_PAPER
from .sources.reference import is_repo_reference

__all__ = ["build_card", "soup_yaml", "write_card_files"]

logger = logging.getLogger(__name__)

HUB_URL = "https://huggingface.co"
SCORE = "score"  # the leaderboard score `Scorer` adds to each metric output
# Example inputs of the card's usage snippet, for tasks of one and of two text columns.
_EXAMPLE_TEXTS = ('"A sentence to classify."', '"The first sentence.", "The second sentence."')


def _round(value: float) -> float:
    """A measured number to 6 significant digits, still a float (NaN and infinities unchanged)."""
    return float(f"{value:.6g}")


def _plain(value):
    """`value` as plain YAML data: tuples become lists, paths strings, floats are kept as they are."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return str(value) if isinstance(value, Path) else value


def _rounded(scores: Scores) -> Scores:
    return {
        split: {key: _round(value) for key, value in metrics.items()} for split, metrics in scores.items()
    }


def _splits(result: MergeResult) -> list[str]:
    """Every scored split role, in the order scored: `selection` first, then the report split(s)."""
    return list(result.candidates[SOUP])


def _report_roles(result: MergeResult) -> list[str]:
    """The split roles the soup is reported on: every scored role but the selection split."""
    return [role for role in _splits(result) if role != "selection"]


def _metric_keys(result: MergeResult, split: str) -> list[str]:
    """The metrics shown for a split: the leaderboard score first (unless it is one metric), then the others."""
    keys = [key for key in result.candidates[SOUP].get(split, {}) if key != SCORE]
    return keys if result.score_key in keys else [SCORE, *keys]


def _dataset_split(result: MergeResult, role: str) -> tuple[str, str]:
    """The `datasets` split a role was read from (a seeded half names the split it halves), and a description."""
    spec = result.splits.get(role, role)
    if spec not in HALVES:
        return spec, spec
    split = get_task(result.task).eval_splits[0]
    return split, f"{spec} half of {split}"


def _dataset_name(result: MergeResult) -> str:
    """The dataset as a reader knows it: a Hub id, or a local folder's or file's name (never a local path)."""
    return result.dataset if is_repo_reference(result.dataset) else Path(result.dataset).name


def _eval_results(result: MergeResult) -> list[EvalResult]:
    """The soup's metrics on every report split (each split other than the selection split)."""
    config = None if Path(result.dataset).is_file() else result.task
    entries = []
    for role in _report_roles(result):
        metrics = result.candidates[SOUP].get(role, {})
        split, description = _dataset_split(result, role)
        for key, value in metrics.items():
            if key == SCORE or not math.isfinite(value):
                logger.debug("Left %s=%s on %s out of the card's model-index.", key, value, role)
                continue
            entries.append(
                EvalResult(
                    task_type="text-classification",
                    task_name="Text Classification",
                    dataset_type=_dataset_name(result),
                    dataset_name=f"{_dataset_name(result)} ({result.task}, {description})",
                    dataset_config=config,
                    dataset_split=split,
                    metric_type=key,
                    metric_value=_round(value),
                )
            )
    return entries


_BODY = """\
# {name}

A *model soup* for GLUE {task}, made with hfsoup from {count} fine-tuned checkpoints. A model soup averages the
weights of models fine-tuned from the same pre-trained model, instead of averaging their predictions, so it runs
as fast as a single model ([Wortsman et al. 2022, *Model soups*]({soups_paper})).

Method: **{method}** ([paper]({method_paper})). {method_description}
{base}
## Results

`score` is the task's leaderboard score: {score_key}. The soup was chosen on the selection split only; the other
columns measure data that played no part in choosing it.

{comparison}

The logit ensemble averages the outputs of all {count} ingredients, so it costs {count} forward passes per input
where the soup costs one.

## Ingredients

{ingredients}
{notes}
## Compatibility

{compatibility}

## Evaluation splits

The soup was chosen on the `selection` split only and is reported on {report}, on which it was never chosen.
{halves}The scores in this card's metadata (`model-index`) are the soup's on the report split(s).

## Reproduce

```bash
{command}
```

`soup.yaml`, next to the weights, holds the recipe with every Hub ingredient pinned to the commit used, so
`hfsoup merge --recipe soup.yaml` rebuilds this soup.

## Use

```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer

model = AutoModelForSequenceClassification.from_pretrained("{name}")
tokenizer = AutoTokenizer.from_pretrained("{name}")
inputs = tokenizer({example}, return_tensors="pt")
logits = model(**inputs).logits  # {output}
```
"""
_HALVES = """The `selection` and `report` splits are two disjoint halves of the `{split}` split of `{dataset}`
(config `{task}`), cut by a permutation seeded with {seed}; the metadata names their split `{split}`, as a
half has no name of its own on the Hub.
"""
_LOCAL = """
Local-folder ingredients are not Hub repositories, so the `base_model` metadata leaves them out: {local}.
"""
_BASE = """
The ingredients were fine-tuned from [{base}]({hub}/{base}).
"""
_LOG = """
## Soup log

Every step of the soup, in order:

```text
{log}
```
"""


def _ingredient_row(result: MergeResult, index: int, columns: list[tuple[str, str]]) -> list[str]:
    record = result.ingredients[index]
    if record.repo_id is None:
        where, revision = f"`{record.reference}` (local folder)", "–"
    else:
        where = f"[{record.repo_id}]({HUB_URL}/{record.repo_id})"
        revision = f"[`{record.revision[:7]}`]({HUB_URL}/{record.repo_id}/tree/{record.revision})"
    added = f"yes (added #{result.order_added.index(index) + 1})" if record.selected else "no"
    scores = [number(record.scores, split, key) for split, key in columns]
    return [str(index), where, revision, *scores, added, f"{record.weight:.4f}"]


def _body(result: MergeResult, name: str) -> str:
    """The card's Markdown body, from `_BODY`."""
    task = get_task(result.task)
    columns = [(split, key) for split in _splits(result) for key in _metric_keys(result, split)]
    header = [f"{split} {key}" for split, key in columns]
    count = len(result.ingredients)
    labels = {
        SOUP: f"**Soup ({result.method})**",
        UNIFORM: "Uniform soup (all ingredients)",
        BEST: f"Best ingredient ({result.ingredients[result.best_ingredient].name}, by selection score)",
        ENSEMBLE: f"Logit ensemble ({count} forward passes)",
    }
    comparison = [
        [label, *(number(result.candidates[key], split, metric) for split, metric in columns)]
        for key, label in labels.items()
        if key in result.candidates
    ]
    ingredients = [_ingredient_row(result, index, columns) for index in range(count)]
    local = [f"`{record.reference}`" for record in result.ingredients if record.repo_id is None]
    notes = _LOCAL.format(local=", ".join(local)) if local else ""
    notes += subsets_section(result) if result.top_subsets else ""
    notes += coefficients_section(result) if result.coefficients else ""
    notes += coefficients_section(result) if result.coefficients else ""
    notes += _LOG.format(log="\n".join(result.log)) if result.log else ""
    halves = _HALVES.format(
        split=task.eval_splits[0], dataset=_dataset_name(result), task=result.task, seed=result.seed
    )
    output = (
        "one similarity score per input"
        if task.is_regression
        else "label ids: " + ", ".join(f"{i} = {label}" for i, label in enumerate(task.label_names))
    )
    return _BODY.format(
        name=name,
        task=result.task.upper(),
        count=count,
        soups_paper=SOUPS_PAPER,
        method=result.method,
        method_paper=result.method_paper,
        method_description=result.method_description,
        base=_BASE.format(base=result.base_model, hub=HUB_URL) if result.base_model else "",
        score_key=result.score_key,
        comparison=table(["Model", *header], comparison),
        ingredients=table(["#", "Ingredient", "Revision", *header, "In soup", "Weight"], ingredients),
        notes=notes,
        compatibility="\n".join(f"- {line}" for line in result.compatibility) or "No warning and no note.",
        report=", ".join(f"`{role}` ({_dataset_split(result, role)[1]})" for role in _report_roles(result)),
        halves=halves if result.splits.get("selection") in HALVES else "",
        command=result.command or "hfsoup merge --recipe soup.yaml",
        example=_EXAMPLE_TEXTS[len(task.text_columns) - 1],
        output=output,
    )


def build_card(result: MergeResult, *, repo_id: str | None = None, name: str | None = None) -> ModelCard:
    """The model card of a merge: Hub metadata (`ModelCardData`) and a Markdown body.

    Args:
        result: what the merge measured and chose.
        repo_id: the Hub repository the soup is pushed to, if any; it names the model.
        name: the model's name when there is no `repo_id`, e.g. the output folder's name.

    Returns:
        The card; `str(card)` is the `README.md`.

    Example:
        ```python
        >>> card = build_card(result, repo_id="alice/minilm-mrpc-soup")
        >>> card.data.base_model_relation
        'merge'
        ```
    """
    model_name = repo_id or name or f"{result.task}-{result.method}-soup"
    merged = list(dict.fromkeys(record.repo_id for record in result.selected if record.repo_id))
    # A soup of local fine-tunes of a known Hub base is, to the Hub, a fine-tune of that base.
    base_models, relation = (merged, "merge") if merged else ([result.base_model], "finetune")
    data = ModelCardData(
        base_model=[b for b in base_models if b] or None,
        base_model_relation=relation if any(base_models) else None,
        license=result.license,
        datasets=[result.dataset] if is_repo_reference(result.dataset) else None,
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=["model-soup", "merge", "hfsoup", result.method],
        metrics=[key for key in _metric_keys(result, "report") if key != SCORE] or None,
        model_name=model_name,
        eval_results=_eval_results(result) or None,
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{_body(result, model_name)}")


def soup_yaml(result: MergeResult) -> str:
    """The machine-readable recipe and result of a merge, as YAML (format `hfsoup-soup/1`).

    Scores and weights are rounded to 6 significant digits; the recipe and a learned soup's `coefficients`
    (which its replay reuses) are kept exactly.

    Example:
        ```python
        >>> yaml.safe_load(soup_yaml(result))["format"]
        'hfsoup-soup/1'
        ```
    """
    data = {
        "format": SOUP_FORMAT,
        "hfsoup_version": version("hfsoup"),
        "date": datetime.now(UTC).date().isoformat(),
        "command": result.command,
        "recipe": _plain(result.recipe),
        "task": result.task,
        "dataset": result.dataset,
        "splits": dict(result.splits),
        "seed": result.seed,
        "metric": result.metric,
        "score": result.score_key,
        "method": {
            "name": result.method,
            "paper": result.method_paper,
            "description": result.method_description,
        },
        "ingredients": [
            {
                **asdict(record),
                "pinned_reference": record.pinned_reference,
                "weight": _round(record.weight),
                "scores": _rounded(record.scores),
            }
            for record in result.ingredients
        ],
        "soup": [
            {"index": index, "pinned_reference": record.pinned_reference, "weight": _round(record.weight)}
            for index, record in zip(result.order_added, result.selected, strict=True)
        ],
        "top_subsets": [
            {"ingredients": list(subset.indices), "selection_score": _round(subset.score)}
            for subset in result.top_subsets
        ],
        "coefficients": {group: list(values) for group, values in result.coefficients.items()},
        "best_ingredient": result.best_ingredient,
        "results": {key: _rounded(scores) for key, scores in result.candidates.items()},
        "log": list(result.log),
        "compatibility": list(result.compatibility),
    }
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def write_card_files(
    result: MergeResult, folder: Path, *, repo_id: str | None = None, name: str | None = None
) -> None:
    """Write `README.md` (the model card) and `soup.yaml` into `folder`.

    Args:
        result: what the merge measured and chose.
        folder: the soup's folder (it must exist).
        repo_id: the Hub repository the soup is pushed to, if any.
        name: the model's name when there is no `repo_id`; defaults to the folder's name.

    Example:
        ```python
        >>> write_card_files(result, Path("soups/mrpc"))
        >>> sorted(p.name for p in Path("soups/mrpc").glob("*.*"))
        ['README.md', 'soup.yaml', ...]
        ```
    """
    folder = Path(folder)
    build_card(result, repo_id=repo_id, name=name or folder.name).save(folder / "README.md")
    (folder / "soup.yaml").write_text(soup_yaml(result), encoding="utf-8")
    logger.info("Wrote the model card and soup.yaml to %s", folder)

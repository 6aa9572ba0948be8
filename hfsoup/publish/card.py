"""The model card (`README.md`) and the `soup.yaml` of a merge, rendered from its [`MergeResult`] alone.

The card's metadata is a `huggingface_hub.ModelCardData`: the Hub ingredients *in the soup* as `base_model`
with `base_model_relation: merge` (an ingredient the soup rejected is not part of it), the license the
ingredients share, and the soup's scores on the held-out report split(s) as `EvalResult`s, so the
Hub lists the soup under each ingredient's merges and shows its scores. The body explains what was averaged,
how it was chosen and how it compares. `soup.yaml` (written by `soup_yaml.py`) holds the same facts as plain
data, plus the recipe that `hfsoup merge --recipe soup.yaml` replays. The card of a plain merge (no task, no
dataset) says that the soup is unevaluated, and has no score.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..eval.tasks import GLUE_TASKS, HALVES
from ..result import AVERAGED_HEAD, BEST, ENSEMBLE, SOUP, UNIFORM, MergeResult
from ..soup.methods.base import SOUPS_PAPER
from ..sources.reference import is_repo_reference
from .soup_yaml import significant, soup_yaml
from .tables import number, result_sections, table

__all__ = ["build_card", "soup_yaml", "write_card_files"]

logger = logging.getLogger(__name__)

HUB_URL = "https://huggingface.co"
SCORE = "score"  # the leaderboard score `Scorer` adds to each metric output
# Example inputs of the card's usage snippet, for tasks of one and of two text columns.
_EXAMPLE_TEXTS = ('"A sentence to classify."', '"The first sentence.", "The second sentence."')


def _splits(result: MergeResult) -> list[str]:
    """Every scored split role, in the order scored: `selection` first, then the report split(s)."""
    return list(result.candidates.get(SOUP, {}))


def _report_roles(result: MergeResult) -> list[str]:
    """The split roles the soup is reported on: every scored role but the selection split."""
    return [role for role in _splits(result) if role != "selection"]


def _metric_keys(result: MergeResult, split: str) -> list[str]:
    """The metrics shown for a split: the leaderboard score first (unless it is one metric), then the others."""
    keys = [key for key in result.candidates.get(SOUP, {}).get(split, {}) if key != SCORE]
    return keys if result.score_key in keys else [SCORE, *keys]


def _dataset_split(result: MergeResult, role: str) -> tuple[str, str]:
    """The `datasets` split a role was read from (a seeded half names the split it halves), and a description."""
    spec = result.splits.get(role, role)
    if spec not in HALVES:
        return spec, spec
    return result.halved_split, f"{spec} half of {result.halved_split}"


def _by_dataset(result: MergeResult) -> bool:
    """Whether the task was defined by a dataset's columns (`--dataset` with `--text-column`, no `--task`)."""
    return not result.recipe.get("task")


def _task_title(result: MergeResult) -> str:
    """The task as the card's first line names it: `GLUE MRPC`, or a task and its dataset."""
    if result.task in GLUE_TASKS and not _by_dataset(result):
        return f"GLUE {result.task.upper()}"
    return f"`{result.task}` ({_dataset_name(result)})"


def _dataset_name(result: MergeResult) -> str:
    """The dataset as a reader knows it: a Hub id, or a local folder's or file's name (never a local path)."""
    return result.dataset if is_repo_reference(result.dataset) else Path(result.dataset).name


def _eval_results(result: MergeResult) -> list[EvalResult]:
    """The soup's metrics on every report split (each split other than the selection split)."""
    if result.task is None:
        return []
    config = None if Path(result.dataset).is_file() or _by_dataset(result) else result.task
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
                    metric_value=significant(value),
                )
            )
    return entries


_BODY = """\
# {name}

A *model soup* for {task}, made with hfsoup from {count} fine-tuned checkpoints. A model soup averages the
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

{held_out}
{halves}The scores in this card's metadata (`model-index`) are the soup's on the report split(s).

{use}"""
_USE = """\
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
_PLAIN_BODY = """\
# {name}

A weight average of {count} fine-tuned checkpoints, made with hfsoup: a *model soup* averages the weights of
models fine-tuned from the same pre-trained model ([Wortsman et al. 2022, *Model soups*]({soups_paper})).

**This soup is unevaluated**: it was averaged without a task or a dataset, so no score was measured, nothing
was chosen, and there are no results to report. Evaluate it before use, or merge again with `--task` or
`--dataset` (and `--text-column`) to score every ingredient and the soup on held-out data.

Method: **{method}** ([paper]({method_paper})). {method_description}
{base}
## Ingredients

{ingredients}
{notes}
## Compatibility

{compatibility}

{use}"""
_HALVES = """The `selection` and `report` splits are two disjoint halves of the `{split}` split of
`{dataset}`{config}, cut by a permutation seeded with {seed}; the metadata names their split `{split}`, as a
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
    """The card's Markdown body, from `_BODY`, or `_PLAIN_BODY` for a plain merge (nothing scored)."""
    columns = [(split, key) for split in _splits(result) for key in _metric_keys(result, split)]
    header = [f"{split} {key}" for split, key in columns]
    count = len(result.ingredients)
    ingredients = [_ingredient_row(result, index, columns) for index in range(count)]
    local = [f"`{record.reference}`" for record in result.ingredients if record.repo_id is None]
    notes = _LOCAL.format(local=", ".join(local)) if local else ""
    notes += result_sections(result)
    notes += _LOG.format(log="\n".join(result.log)) if result.log else ""
    if result.label_names:
        output = "label ids: " + ", ".join(f"{i} = {label}" for i, label in enumerate(result.label_names))
    else:
        output = "one predicted score per input (a regression)" if result.task else "the model's logits"
    texts = len(result.text_columns) or 1
    use = _USE.format(
        name=name,
        command=result.command or "hfsoup merge --recipe soup.yaml",
        example=_EXAMPLE_TEXTS[texts - 1],
        output=output,
    )
    shared = dict(
        name=name,
        count=count,
        soups_paper=SOUPS_PAPER,
        method=result.method,
        method_paper=result.method_paper,
        method_description=result.method_description,
        base=_BASE.format(base=result.base_model, hub=HUB_URL) if result.base_model else "",
        ingredients=table(["#", "Ingredient", "Revision", *header, "In soup", "Weight"], ingredients),
        notes=notes,
        compatibility="\n".join(f"- {line}" for line in result.compatibility) or "No warning and no note.",
        use=use,
    )
    if result.task is None:
        return _PLAIN_BODY.format(**shared)
    labels = {
        SOUP: f"**Soup ({result.method})**",
        UNIFORM: "Uniform soup (all ingredients)",
        BEST: f"Best ingredient ({result.ingredients[result.best_ingredient].name}, by selection score)",
        ENSEMBLE: f"Logit ensemble ({count} forward passes)",
        AVERAGED_HEAD: f"Soup ({result.method}) with its head averaged, before the refit",
    }
    comparison = [
        [label, *(number(result.candidates[key], split, metric) for split, metric in columns)]
        for key, label in labels.items()
        if key in result.candidates
    ]
    config = "" if _by_dataset(result) else f" (config `{result.task}`)"
    halves = _HALVES.format(
        split=result.halved_split, dataset=_dataset_name(result), config=config, seed=result.seed
    )
    return _BODY.format(
        **shared,
        task=_task_title(result),
        score_key=result.score_key,
        comparison=table(["Model", *header], comparison),
        held_out=_held_out(result),
        halves=halves if result.splits.get("selection") in HALVES else "",
    )


def _held_out(result: MergeResult) -> str:
    """The card's sentence on the report split(s): held out, or how many rows the selection split shared."""
    report = ", ".join(f"`{role}` ({_dataset_split(result, role)[1]})" for role in _report_roles(result))
    if not result.shared_rows:
        return f"The soup was chosen on the `selection` split only and is reported on {report}, on which it was never chosen."
    shared = ", ".join(f"{count} rows of `{split}`" for split, count in result.shared_rows.items())
    return (
        f"The soup was chosen on the `selection` split and is reported on {report}, but the splits overlap "
        f"(`--allow-overlapping-splits`): {shared} were also selection rows, so the report scores are **not** "
        "held out."
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
    model_name = repo_id or name or "-".join(filter(None, (result.task, result.method, "soup")))
    merged = list(dict.fromkeys(record.repo_id for record in result.selected if record.repo_id))
    # A soup of local fine-tunes of a known Hub base is, to the Hub, a fine-tune of that base.
    base_models, relation = (merged, "merge") if merged else ([result.base_model], "finetune")
    data = ModelCardData(
        base_model=[b for b in base_models if b] or None,
        base_model_relation=relation if any(base_models) else None,
        license=result.license,
        datasets=[result.dataset] if result.dataset and is_repo_reference(result.dataset) else None,
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=["model-soup", "merge", "hfsoup", result.method, *([] if result.task else ["unevaluated"])],
        metrics=[key for key in _metric_keys(result, "report") if key != SCORE] or None,
        model_name=model_name,
        eval_results=_eval_results(result) or None,
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{_body(result, model_name)}")


def write_card_files(
    result: MergeResult,
    folder: Path,
    *,
    repo_id: str | None = None,
    name: str | None = None,
    weights_hash: str | None = None,
) -> None:
    """Write `README.md` (the model card) and `soup.yaml` into `folder`.

    Args:
        result: what the merge measured and chose.
        folder: the soup's folder (it must exist).
        repo_id: the Hub repository the soup is pushed to, if any.
        name: the model's name when there is no `repo_id`; defaults to the folder's name.
        weights_hash: the `sha256:` of the soup's weight files as written, recorded in soup.yaml so that a push
            refuses weights changed since the card was made.

    Example:
        ```python
        >>> write_card_files(result, Path("soups/mrpc"))
        >>> sorted(p.name for p in Path("soups/mrpc").glob("*.*"))
        ['README.md', 'soup.yaml', ...]
        ```
    """
    folder = Path(folder)
    build_card(result, repo_id=repo_id, name=name or folder.name).save(folder / "README.md")
    (folder / "soup.yaml").write_text(soup_yaml(result, weights_hash=weights_hash), encoding="utf-8")
    logger.info("Wrote the model card and soup.yaml to %s", folder)

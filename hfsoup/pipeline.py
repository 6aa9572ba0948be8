"""Orchestration: a recipe in, a scored soup and its output folder out.

The order of work is chosen so that a doomed merge fails fast and a failed one leaves nothing behind: the
output folder, the task and the metric first; then the ingredients' metadata and the compatibility report
(no weight download when it finds an error); then the data splits; then weights, scoring and souping; and
only when everything succeeded the output folder moves into place (see `staging.py`).

A recipe without a task or dataset is a plain merge: the same checks, then a uniform or weighted average that
is never scored (as mergekit's linear merge), with a card that says so.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import split_torch_state_dict_into_shards
from transformers import AutoModelForSequenceClassification

from .card import write_card_files
from .errors import IncompatibleIngredientsError, InvalidSettingError
from .eval.data import load_split
from .eval.loss import SelectionLoss
from .eval.metrics import load_metric
from .eval.resolve import resolve_task
from .eval.scoring import Scorer
from .eval.tasks import Task
from .plain_merge import plain_soup
from .precision import scoring_model, stored_dtype, torch_dtype
from .processes import Processes
from .recipe import MergeRecipe
from .result import MergeResult
from .scored_soup import scored_soup, split_specs
from .soup import (
    CompatReport,
    Ingredient,
    check_compatibility,
    check_weights,
    get_method,
    load_ingredient,
    load_ingredients,
    raise_if_incompatible,
)
from .soup.compat.labels import is_generic
from .sources import LocalSource, is_repo_reference
from .staging import check_output, refuse_containing, staged

logger = logging.getLogger(__name__)

__all__ = ["Merge", "run_merge"]

# Weight files above this size are split into shards with an index: `save_pretrained`'s default.
MAX_SHARD_SIZE = "50GB"


@dataclass
class Merge:
    """A finished merge: the result, when written the output folder, and the compatibility report."""

    result: MergeResult
    output_dir: Path | None
    report: CompatReport | None = None


def run_merge(
    recipe: MergeRecipe,
    *,
    output_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    token: str | bool | None = None,
    command: str = "",
    repo_id: str | None = None,
    progress: bool = True,
    trust_remote_metric: bool = False,
    allow_custom_code: bool = False,
    allow_independent_heads: bool = False,
    processes: Processes | None = None,
    max_shard_size: int | str | None = None,
) -> Merge:
    """Check, score and soup the recipe's ingredients; write the soup folder if `output_dir` is given.

    Args:
        recipe: what to merge and how.
        output_dir: where the soup goes (model, tokenizer, `README.md`, `soup.yaml`); `None` writes nothing.
        overwrite: replace an existing `output_dir` (never the working folder, nor one holding an input).
        token: a Hub token for private or gated ingredients; it is never written anywhere.
        command: the command line that reproduces this merge, for the card (without secrets).
        repo_id: the Hub repository the soup will be pushed to, which names it in the card.
        progress: show progress bars.
        trust_remote_metric: allow a metric that is neither shipped nor local (see `load_metric`).
        allow_custom_code: accept ingredients whose config declares custom code (never run).
        allow_independent_heads: make a uniform or weighted soup even of tensors that look independently
            initialized in each ingredient (see [`_refuse_independent_heads`]).
        processes: the processes and device to score on (see [`Processes`]); `None` for this process on
            the CPU. Each scoring pass is split between them; only the main one writes `output_dir`.
        max_shard_size: the largest weight file (`None`: `MAX_SHARD_SIZE`, as `save_pretrained`); a bigger
            soup is split into shards with an index.

    Returns:
        The [`Merge`].

    Raises:
        OutputExistsError: `output_dir` exists and `overwrite` is false.
        IncompatibleIngredientsError: the ingredients cannot be averaged.
        HfSoupError: any other user error (missing model, bad dataset, Hub error...).
    """
    output = check_output(output_dir, overwrite=overwrite) if output_dir is not None else None
    max_shard_size = _checked_shard_size(max_shard_size or MAX_SHARD_SIZE)
    processes = processes or Processes()
    if output is not None:
        refuse_containing(output, _local_inputs(recipe), "input")
    task = metric = None
    if recipe.scored:
        task = resolve_task(
            recipe.task,
            dataset=recipe.dataset,
            text_columns=recipe.text_columns,
            label_column=recipe.label_column,
            splits=(recipe.selection_split, recipe.report_split)
            + ((recipe.finetune.train_split,) if recipe.finetune else ()),
        )
        metric = load_metric(task, recipe.metric, trust_remote_metric=trust_remote_metric)
    get_method(recipe.method).check_count(recipe.ingredient_count)  # before any training or download
    references = list(recipe.models)
    if recipe.finetune is not None:
        from .finetune import finetune_ingredients

        work_dir = (output.parent / f"{output.name}-ingredients") if output else Path("hfsoup-ingredients")
        references += finetune_ingredients(
            recipe.finetune, task, dataset=recipe.dataset, work_dir=work_dir, seed=recipe.seed, token=token
        )
    ingredients = load_ingredients(references, token=token)
    base = load_ingredient(recipe.base, token=token) if recipe.base else None
    local = [
        i.source.folder for i in [*ingredients, base] if i is not None and isinstance(i.source, LocalSource)
    ]
    if output is not None:
        refuse_containing(output, local, "model folder")
    _check_content(recipe, ingredients)
    # Metadata first (configs, tokenizers, headers: no weight downloaded), then the checks that read weights.
    report = check_compatibility(
        ingredients,
        base=base,
        check_values=False,
        task_labels=None if task is None or is_generic(task.label_names) else task.label_names,
        allow_custom_code=allow_custom_code,
    )
    raise_if_incompatible(report)
    if task is not None:
        task = _fit_task(task, ingredients[0], report.label_names)
    splits = {
        role: load_split(task, split, dataset=recipe.dataset, seed=recipe.seed)
        for role, split in split_specs(recipe, task).items()
    }
    check_weights(ingredients, base, report)
    raise_if_incompatible(report)
    _refuse_independent_heads(recipe, report, allow_independent_heads)
    for line in report.warnings:
        logger.warning(line)
    ingredients = report.aligned(ingredients)

    # The soups are written into this float32 model; scoring may run on a copy in another dtype.
    model = _model_of(ingredients[0], report.label_names).to(processes.device)
    tokenizer = ingredients[0].tokenizer()
    if task is None:
        result = plain_soup(recipe, ingredients, model)
    else:
        scored = scoring_model(model, torch_dtype(recipe.dtype))
        scorers = {
            role: Scorer(
                scored,
                tokenizer,
                task,
                rows,
                metric=metric,
                metric_key=recipe.metric_key,
                batch_size=recipe.batch_size,
                max_length=recipe.max_length,
                weights=model,
                processes=processes,
            )
            for role, rows in splits.items()
        }
        gradient = None
        if get_method(recipe.method).fits:
            gradient = SelectionLoss(
                model,
                tokenizer,
                task,
                splits["selection"],
                batch_size=recipe.batch_size,
                max_length=recipe.max_length,
                seed=recipe.seed,
                processes=processes,
            )
        result = scored_soup(recipe, task, ingredients, model, scorers, progress, gradient)
        result.text_columns, result.halved_split = list(task.text_columns), task.eval_splits[0]
    result.label_names = list(task.label_names if task else report.label_names or [])
    result.compatibility = report.warnings + report.notes
    result.command = command
    result.base_model = _common_base(recipe, ingredients)
    result.license = _common_license(ingredients)
    if output is None or not processes.is_main:
        return Merge(result, None, report)
    stored = (info.dtype for i in ingredients for info in i.tensor_infos.values() if info.is_float)
    model.to(torch_dtype(recipe.output_dtype) if recipe.output_dtype else stored_dtype(stored))
    with staged(output, overwrite=overwrite) as staging:
        model.save_pretrained(staging, max_shard_size=max_shard_size)
        tokenizer.save_pretrained(staging)
        write_card_files(result, staging, repo_id=repo_id, name=output.name)
    logger.info("Wrote the soup to %s", output)
    return Merge(result, output, report)


def _fit_task(task: Task, first: Ingredient, label_names: list[str] | None) -> Task:
    """The task, checked against the models' number of outputs; class ids without names take the models' names.

    Raises:
        InvalidSettingError: the models output another number of logits than the task has labels.
    """
    outputs = first.config.num_labels
    if outputs != task.num_labels:
        kind = "a regression (one score)" if task.is_regression else f"{task.num_labels} classes"
        shown = ", ".join(task.label_names[:8]) + (", ..." if task.num_labels > 8 else "")
        raise InvalidSettingError(
            f"the models output {outputs} logit(s) but label column {task.label_column!r} of task {task.name} has "
            f"{kind}{f' ({shown})' if shown else ''}: score on the task or label column the models were "
            "fine-tuned on (--task, --dataset, --label-column)."
        )
    if task.label_names and is_generic(task.label_names) and label_names:
        return dataclasses.replace(task, label_names=tuple(label_names))
    return task


def _local_inputs(recipe: MergeRecipe) -> list[Path]:
    """The recipe's inputs that are local paths (models, base, dataset, metric, fine-tuning base)."""
    named = [*recipe.models, recipe.base, recipe.dataset, recipe.metric]
    if recipe.finetune is not None:
        named.append(recipe.finetune.base)
    return [Path(name).expanduser() for name in named if name and Path(name).expanduser().exists()]


def _checked_shard_size(size: int | str) -> int | str:
    """Refuse a shard size `save_pretrained` would not read (it splits with the same huggingface_hub helper)."""
    try:
        split_torch_state_dict_into_shards({}, max_shard_size=size)
        if isinstance(size, int) and size < 1:
            raise ValueError(size)
    except ValueError as error:
        raise InvalidSettingError(
            f"--max-shard-size must be a number of bytes or a size such as 500MB or 5GB, got {size!r}."
        ) from error
    return size


def _refuse_independent_heads(recipe: MergeRecipe, report, allow: bool) -> None:
    """A uniform or weighted soup of independently initialized heads averages noise: refuse it unless allowed.

    A greedy or exhaustive soup may proceed (each keeps a mix only if its held-out score is better; the
    report's warning says it will likely keep one ingredient), and so may an explicit `allow`.
    """
    if not report.independent_tensors or allow or get_method(recipe.method).chooses:
        return
    names = ", ".join(report.independent_tensors[:3])
    raise IncompatibleIngredientsError(
        f"{names} look(s) independently initialized in each ingredient while the backbones agree, so a "
        f"{recipe.method} soup would average unrelated random heads: fine-tune every run from one shared "
        "initialization (hfsoup's finetune does, with head_seed), use --method greedy, or pass "
        "--allow-independent-heads to average them anyway.",
        report=report,
    )


def _check_content(recipe: MergeRecipe, ingredients: list[Ingredient]) -> None:
    """Refuse local ingredients whose weights differ from those a replayed soup.yaml recorded."""
    for ingredient in ingredients:
        expected = (recipe.content_hashes or {}).get(ingredient.reference)
        if (
            expected
            and isinstance(ingredient.source, LocalSource)
            and ingredient.source.content_hash != expected
        ):
            raise InvalidSettingError(
                f"{ingredient.reference} changed since the soup.yaml was written (its weights' {expected[:15]}... "
                "no longer match), so the replay would not rebuild that soup: restore the folder, or merge the "
                "folders anew without --recipe."
            )


def _model_of(first: Ingredient, label_names: list[str]) -> torch.nn.Module:
    """An fp32 model of the first ingredient's architecture, in the common label order; weights come in later."""
    config = first.config
    if label_names:
        config = config.__class__.from_dict(
            {
                **config.to_dict(),
                "id2label": dict(enumerate(label_names)),
                "label2id": {n: i for i, n in enumerate(label_names)},
            }
        )
    model = AutoModelForSequenceClassification.from_config(
        config, trust_remote_code=False, dtype=torch.float32
    )
    return model.eval()


def _common_base(recipe: MergeRecipe, ingredients: list[Ingredient]) -> str | None:
    """The pre-trained base the ingredients share, when a Hub id names it (`--base`, or every card agrees)."""
    if recipe.base and is_repo_reference(recipe.base):
        return recipe.base.partition("@")[0]
    shared = frozenset.intersection(*(i.declared_bases for i in ingredients))
    hub = sorted(b for b in shared if is_repo_reference(b))
    return hub[0] if len(hub) == 1 else None


def _common_license(ingredients: list[Ingredient]) -> str | None:
    """The license every ingredient's card declares, or `None` if one declares none or they differ."""
    licenses = {str(i.card_data.get("license") or "") for i in ingredients}
    shared = licenses.pop() if len(licenses) == 1 else ""
    return shared or None

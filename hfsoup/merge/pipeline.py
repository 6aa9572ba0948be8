"""A merge in four stages: check, load, soup, write. A recipe of model references in; a soup folder out.

The order of work is chosen so that a doomed merge fails fast and a failed one leaves nothing behind:
[`check`] the recipe, the output folder, the task and the metric (nothing downloaded); [`load`] the
ingredients' metadata, the compatibility report (no weight read when it finds an error), the data splits,
then the checks that read weights; [`soup`] scores and averages; and [`write`] moves the output folder into
place only when everything succeeded (see `hfsoup/staging.py`).

A recipe without a task or dataset is a plain merge: the same checks, then a uniform or weighted average that
is never scored (as mergekit's linear merge), with a card that says so. Training is not a stage: a recipe that
trains its ingredients goes through `hfsoup.finetune`, which calls [`run_merge`] with the trained folders.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
from transformers import AutoModelForSequenceClassification

from ..errors import DatasetError
from ..eval.data import load_split
from ..eval.loss import SelectionLoss
from ..eval.metrics import load_metric
from ..eval.processes import Processes
from ..eval.resolve import resolve_task
from ..eval.scoring import Scorer
from ..eval.tasks import Task
from ..publish.card import write_card_files
from ..recipe.merge import MergeRecipe
from ..result import MergeResult
from ..soup import (
    CompatReport,
    Ingredient,
    check_compatibility,
    check_weights,
    get_method,
    load_ingredient,
    load_ingredients,
    raise_if_incompatible,
)
from ..soup.compat.labels import is_generic
from ..sources import LocalSource
from ..staging import check_output, refuse_containing, staged
from .checks import (
    check_content,
    checked_shard_size,
    fit_task,
    local_inputs,
    refuse_independent_heads,
    refuse_shared_rows,
)
from .plain import plain_soup
from .precision import scoring_model, stored_dtype, torch_dtype
from .record import merge_result
from .scored import Refit, Scoring, scored_soup, split_specs

logger = logging.getLogger(__name__)

__all__ = ["Merge", "MergeOptions", "run_merge"]

# Weight files above this size are split into shards with an index: `save_pretrained`'s default.
MAX_SHARD_SIZE = "50GB"


@dataclass
class Merge:
    """A finished merge: the result, when written the output folder, and the compatibility report."""

    result: MergeResult
    output_dir: Path | None
    report: CompatReport | None = None


@dataclass
class MergeOptions:
    """How a merge runs, beside its recipe: see [`run_merge`]'s arguments of the same names."""

    output_dir: Path | None = None
    overwrite: bool = False
    token: str | bool | None = None
    command: str = ""
    start: dict | None = None
    missing_runs: list[str] | None = None
    rates: dict | None = None
    repo_id: str | None = None
    progress: bool = True
    trust_remote_metric: bool = False
    allow_custom_code: bool = False
    allow_independent_heads: bool = False
    processes: Processes | None = None
    max_shard_size: int | str = MAX_SHARD_SIZE


@dataclass
class Checked:
    """The first stage's answer: the task (`None` for a plain merge), its metric, and the output folder."""

    task: Task | None
    metric: object | None
    output: Path | None


@dataclass
class Loaded:
    """The second stage's answer: the checked ingredients (labels aligned), the report, the task and the splits."""

    ingredients: list[Ingredient]
    report: CompatReport
    task: Task | None
    metric: object | None
    splits: dict[str, datasets.Dataset]
    base: Ingredient | None = None
    refit_rows: datasets.Dataset | None = None
    shared_rows: dict[str, int] | None = None


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
    task: Task | None = None,
    start: dict | None = None,
    missing_runs: list[str] | None = None,
    rates: dict | None = None,
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
            initialized in each ingredient (see `checks.refuse_independent_heads`).
        processes: the processes and device to score on (see [`Processes`]); `None` for this process on
            the CPU. Each scoring pass is split between them; only the main one writes `output_dir`.
        max_shard_size: the largest weight file (`None`: `MAX_SHARD_SIZE`, as `save_pretrained`); a bigger
            soup is split into shards with an index.
        task: the task, already resolved by the caller (a sweep resolves it once); `None` resolves the recipe's.
        start: how the ingredients' runs started (a sweep's `start.json`: the probed head and its scores), for
            the card and soup.yaml.
        missing_runs: the runs of the ingredients' sweep that were not finished, so not souped (the card
            names them).
        rates: how a sweep whose runs span several learning rates was souped (see `hfsoup.finetune.rates`).

    Returns:
        The [`Merge`].

    Raises:
        OutputExistsError: `output_dir` exists and `overwrite` is false.
        IncompatibleIngredientsError: the ingredients cannot be averaged.
        HfSoupError: any other user error (missing model, bad dataset, Hub error...).
    """
    options = MergeOptions(
        output_dir=Path(output_dir) if output_dir is not None else None,
        overwrite=overwrite,
        token=token,
        command=command,
        start=start,
        missing_runs=missing_runs,
        rates=rates,
        repo_id=repo_id,
        progress=progress,
        trust_remote_metric=trust_remote_metric,
        allow_custom_code=allow_custom_code,
        allow_independent_heads=allow_independent_heads,
        processes=processes or Processes(),
        max_shard_size=checked_shard_size(max_shard_size or MAX_SHARD_SIZE),
    )
    checked = check(recipe, options, task)
    loaded = load(recipe, checked, options)
    model = _model_of(loaded.ingredients[0], loaded.report.label_names).to(options.processes.device)
    result = soup(recipe, loaded, model, options)
    if checked.output is None or not options.processes.is_main:
        return Merge(result, None, loaded.report)
    write(result, model, loaded, checked.output, recipe, options)
    return Merge(result, checked.output, loaded.report)


def check(recipe: MergeRecipe, options: MergeOptions, task: Task | None = None) -> Checked:
    """Stage 1, before any download: the ingredients' count, the output folder, the task and its metric."""
    recipe.check_models()
    output = None
    if options.output_dir is not None:
        output = check_output(options.output_dir, overwrite=options.overwrite)
        refuse_containing(output, local_inputs(recipe), "input")
    metric = None
    if recipe.scored:
        task = task or resolve_task(
            recipe.task,
            dataset=recipe.dataset,
            text_columns=recipe.text_columns,
            label_column=recipe.label_column,
            splits=(recipe.selection_split, recipe.report_split),
        )
        metric = load_metric(task, recipe.metric, trust_remote_metric=options.trust_remote_metric)
    return Checked(task if recipe.scored else None, metric, output)


def load(recipe: MergeRecipe, checked: Checked, options: MergeOptions) -> Loaded:
    """Stage 2: the ingredients' metadata and compatibility, the splits, then the checks that read weights."""
    ingredients = load_ingredients(recipe.models, token=options.token)
    base = load_ingredient(recipe.base, token=options.token) if recipe.base else None
    if checked.output is not None:
        local = [
            i.source.folder
            for i in [*ingredients, base]
            if i is not None and isinstance(i.source, LocalSource)
        ]
        refuse_containing(checked.output, local, "model folder")
    check_content(recipe, ingredients)
    task = checked.task
    # Metadata first (configs, tokenizers, headers: no weight downloaded), then the checks that read weights.
    report = check_compatibility(
        ingredients,
        base=base,
        check_values=False,
        task_labels=None if task is None or is_generic(task.label_names) else task.label_names,
        allow_custom_code=options.allow_custom_code,
    )
    raise_if_incompatible(report)
    if task is not None:
        task = fit_task(task, ingredients[0], report.label_names)
    splits = {
        role: load_split(task, split, dataset=recipe.dataset, seed=recipe.seed)
        for role, split in split_specs(recipe, task).items()
    }
    shared = refuse_shared_rows(recipe, task, split_specs(recipe, task)) if task is not None else None
    refit_rows = _refit_rows(recipe, task) if recipe.refit_head else None
    check_weights(ingredients, base, report)
    raise_if_incompatible(report)
    refuse_independent_heads(recipe, report, options.allow_independent_heads)
    for line in report.warnings:
        logger.warning(line)
    aligned = report.aligned(ingredients)
    return Loaded(aligned, report, task, checked.metric, splits, base, refit_rows, shared)


def soup(recipe: MergeRecipe, loaded: Loaded, model: torch.nn.Module, options: MergeOptions) -> MergeResult:
    """Stage 3: the soup averaged into `model` (scored with its candidates when there is a task)."""
    task, ingredients = loaded.task, loaded.ingredients
    if task is None:
        souped = plain_soup(recipe, ingredients, model, base=loaded.base)
    else:
        scoring = _scoring(recipe, loaded, model, options)
        souped = scored_soup(recipe, ingredients, model, scoring, progress=options.progress, base=loaded.base)
    return merge_result(
        recipe,
        task,
        ingredients,
        souped,
        splits=split_specs(recipe, task),
        label_names=list(task.label_names if task else loaded.report.label_names or []),
        compatibility=loaded.report.warnings + loaded.report.notes,
        command=options.command,
        start=options.start,
        missing_runs=options.missing_runs,
        rates=options.rates,
        shared_rows=loaded.shared_rows,
    )


def write(
    result: MergeResult,
    model: torch.nn.Module,
    loaded: Loaded,
    output: Path,
    recipe: MergeRecipe,
    options: MergeOptions,
) -> None:
    """Stage 4: the soup, its tokenizer, card and soup.yaml written aside, then moved into `output` whole."""
    ingredients = loaded.ingredients
    stored = (info.dtype for i in ingredients for info in i.tensor_infos.values() if info.is_float)
    model.to(torch_dtype(recipe.output_dtype) if recipe.output_dtype else stored_dtype(stored))
    with staged(output, overwrite=options.overwrite) as staging:
        model.save_pretrained(staging, max_shard_size=options.max_shard_size)
        ingredients[0].tokenizer().save_pretrained(staging)
        weights = LocalSource(staging).content_hash
        write_card_files(result, staging, repo_id=options.repo_id, name=output.name, weights_hash=weights)
    logger.info("Wrote the soup to %s", output)


def _scoring(recipe: MergeRecipe, loaded: Loaded, model: torch.nn.Module, options: MergeOptions) -> Scoring:
    """A `Scorer` per split on `model` (or its copy in the scoring dtype), and the loss a fitted method needs."""
    scored = scoring_model(model, torch_dtype(recipe.dtype))
    tokenizer = loaded.ingredients[0].tokenizer()
    common = dict(batch_size=recipe.batch_size, max_length=recipe.max_length, processes=options.processes)
    scorers = {
        role: Scorer(
            scored,
            tokenizer,
            loaded.task,
            rows,
            metric=loaded.metric,
            metric_key=recipe.metric_key,
            weights=model,
            **common,
        )
        for role, rows in loaded.splits.items()
    }
    loss = None
    if get_method(recipe.method).fits:
        loss = SelectionLoss(
            model, tokenizer, loaded.task, loaded.splits["selection"], seed=recipe.seed, **common
        )
    refit = None
    if loaded.refit_rows is not None:
        refit = Refit(
            loaded.refit_rows, tokenizer, recipe.refit_split or "train", recipe.max_length, recipe.batch_size
        )
    return Scoring(scorers, loss, refit)


def _refit_rows(recipe: MergeRecipe, task: Task) -> datasets.Dataset:
    """The training rows `--refit-head` fits on; a dataset without that split is one line naming it."""
    split = recipe.refit_split or "train"
    try:
        return load_split(task, split, dataset=recipe.dataset, seed=recipe.seed)
    except DatasetError as error:
        raise DatasetError(
            f"--refit-head fits the soup's head on split {split!r}, which cannot be read ({error}); name a "
            "training split with --refit-split, e.g. --refit-split 'train[:2000]'."
        ) from error


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

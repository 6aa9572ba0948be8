"""Can these ingredients be averaged? One report with every difference, found before any averaging.

[`check_compatibility`] compares the ingredients with the first one and collects every problem at once:

- **errors** (averaging is refused): model type or architecture, a config field that changes the computation
  (sizes, layers, heads, vocabulary, activation, `layer_norm_eps`, `problem_type`, ...), `num_labels` or the
  set of label names, tensor names, tensor shapes, non-float dtypes, tokenizer vocabulary, NaN or Inf weights;
- **warnings** (averaging is possible but you should know): classifier rows reordered to the first ingredient's
  label ids, ingredients that do not look fine-tuned from one common base, tensors the base lacks;
- **notes**: float dtypes that differ (F32, BF16, F16 are all averaged in float32), training-only config
  fields that differ (dropout, `initializer_range`), generic `LABEL_0` labels compared by index, skipped checks.

Metadata checks read configs, tokenizers and safetensors headers only. Value checks stream the weights
tensor-name-major (tensor `k` of every ingredient, then `k + 1`), so each file is read once and at most one
tensor per ingredient is in memory.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import yaml
from huggingface_hub.repocard import metadata_load
from huggingface_hub.utils import tqdm

from .errors import IncompatibleIngredientsError, InvalidSettingError
from .geometry import accumulate_gram, gram_distance, zip_tensors
from .ingredients import Ingredient

__all__ = [
    "COMMON_BASE_MAX_DISTANCE",
    "CompatReport",
    "check_compatibility",
    "ensure_compatible",
]

logger = logging.getLogger(__name__)

# Relative distance ||a - b|| / ((||a|| + ||b||) / 2) over the backbone's weight matrices above which two models
# are taken not to share a base. Fine-tunes of one base stay well under 0.1 (the whole update is a few percent
# of the weights); independently initialised or pretrained matrices are about sqrt(2) ~ 1.4 apart.
# Vectors (LayerNorm, biases) are left out: they start at the same constants in every model.
COMMON_BASE_MAX_DISTANCE = 0.5

# Config fields used only in training: a difference is a note, since ingredients of a hyperparameter sweep
# legitimately differ there. Fields starting with "_" are bookkeeping and ignored; the labels, model type and
# architectures have their own checks. Every other field is taken to change the computation.
TRAINING_ONLY_FIELDS = frozenset(
    {
        "attention_dropout",
        "attention_probs_dropout_prob",
        "activation_dropout",
        "classifier_dropout",
        "dropout",
        "hidden_dropout",
        "hidden_dropout_prob",
        "seq_classif_dropout",
        "layerdrop",
        "initializer_range",
        "initializer_factor",
        "gradient_checkpointing",
        "use_cache",
        "output_attentions",
        "output_hidden_states",
        "return_dict",
        "finetuning_task",
    }
)
SEPARATELY_CHECKED_FIELDS = frozenset(
    {"model_type", "architectures", "id2label", "label2id", "transformers_version", "dtype", "torch_dtype"}
)
# Fields a base model may differ in from its fine-tunes (it usually has another head).
HEAD_FIELDS = frozenset({"problem_type", "num_labels"})


@dataclass
class CompatReport:
    """Every problem found among ingredients, grouped by severity; each entry is one readable line.

    Args:
        ingredients: the ingredients' display names.
        errors: problems that make averaging impossible; non-empty means incompatible.
        warnings: averaging is possible, but the soup may be meaningless or was adjusted.
        notes: differences that do not matter for averaging, and checks that were skipped.
        base: the base model's display name, if one was given.
    """

    ingredients: list[str]
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    base: str | None = None

    def ok(self) -> bool:
        """Whether the ingredients can be averaged (no errors)."""
        return not self.errors

    def summary(self) -> str:
        """One line: the verdict and the first problems."""
        if self.ok():
            return f"{len(self.ingredients)} ingredients can be averaged ({len(self.warnings)} warning(s))."
        shown = "; ".join(error.split("; ")[0] for error in self.errors[:3])
        more = f"; and {len(self.errors) - 3} more" if len(self.errors) > 3 else ""
        return (
            f"{len(self.errors)} problem(s) make these ingredients incompatible: {shown}{more}; "
            "run `hfsoup inspect` on them for the full report."
        )

    def to_text(self) -> str:
        """The full report as plain text, one problem per line, for the terminal or a log."""
        lines = [f"Compatibility of {len(self.ingredients)} ingredients: {', '.join(self.ingredients)}"]
        if self.base:
            lines.append(f"Base: {self.base}")
        for title, entries in (("Errors", self.errors), ("Warnings", self.warnings), ("Notes", self.notes)):
            if entries:
                lines += ["", f"{title} ({len(entries)}):", *(f"  - {entry}" for entry in entries)]
        verdict = (
            "OK, these ingredients can be averaged." if self.ok() else "INCOMPATIBLE: fix the errors above."
        )
        return "\n".join([*lines, "", f"Result: {verdict}"])


def _grouped(values: Sequence[object], names: Sequence[str]) -> str | None:
    """`"32 (a, c) vs 48 (b)"` if the values differ, else `None`."""
    groups: dict[str, list[str]] = {}
    for value, name in zip(values, names, strict=True):
        groups.setdefault(json.dumps(value, sort_keys=True, default=str), []).append(name)
    if len(groups) == 1:
        return None
    return " vs ".join(f"{value} ({', '.join(members)})" for value, members in groups.items())


def _check_config(
    models: list[Ingredient], names: list[str], report: CompatReport, skip: frozenset[str] = frozenset()
) -> None:
    dicts = [model.config.to_dict() for model in models]
    for key in ("model_type", "architectures"):
        values = [d.get(key) for d in dicts if d.get(key) is not None]
        if key not in skip and (
            line := _grouped(values, [n for n, d in zip(names, dicts, strict=True) if d.get(key) is not None])
        ):
            report.errors.append(f"{key} differs: {line}; only models of one architecture can be averaged.")
    fields = sorted({key for d in dicts for key in d} - SEPARATELY_CHECKED_FIELDS - skip)
    for key in fields:
        if key.startswith("_") or not (line := _grouped([d.get(key) for d in dicts], names)):
            continue
        if key in TRAINING_ONLY_FIELDS:
            report.notes.append(f"config {key} differs ({line}); it is used only in training.")
        else:
            report.errors.append(f"config {key} differs: {line}; it changes the model's computation.")


def _is_generic(labels: list[str]) -> bool:
    return all(label == f"LABEL_{index}" for index, label in enumerate(labels))


def _labels(ingredient: Ingredient) -> list[str]:
    id2label = ingredient.config.id2label
    return [id2label.get(k, f"LABEL_{k}") for k in range(ingredient.config.num_labels)]


def _check_labels(ingredients: list[Ingredient], report: CompatReport) -> None:
    for ingredient in ingredients:
        ingredient.label_permutation = None
    first, reference = ingredients[0], _labels(ingredients[0])
    if line := _grouped([i.config.num_labels for i in ingredients], [i.name for i in ingredients]):
        report.errors.append(
            f"num_labels differs: {line}; only classifiers of the same labels can be averaged."
        )
    same_size = [i for i in ingredients if i.config.num_labels == first.config.num_labels]
    generic = [i.name for i in same_size if _is_generic(_labels(i))]
    for ingredient in same_size[1:]:
        own = _labels(ingredient)
        if own == reference or _is_generic(own) or _is_generic(reference):
            continue
        if sorted(own) != sorted(reference):
            report.errors.append(
                f"label sets differ: {first.name} has {reference}, {ingredient.name} has {own}; "
                "only classifiers of the same labels can be averaged."
            )
        elif not any(len(ingredient.tensor_infos[n].shape) == 2 for n in ingredient.label_tensor_names):
            report.errors.append(
                f"{ingredient.name} orders its labels differently ({own}) but has no classifier output tensor "
                f"with {len(own)} rows to reorder; re-save it with {first.name}'s label2id."
            )
        else:
            ingredient.label_permutation = [own.index(label) for label in reference]
            report.warnings.append(
                f"{ingredient.name} orders its labels {own}, {first.name} orders them {reference}: the rows "
                f"of {', '.join(ingredient.label_tensor_names)} are reordered to {first.name}'s label ids."
            )
    if generic and first.label_tensor_names:
        report.notes.append(
            f"generic labels (LABEL_0, LABEL_1, ...) in {', '.join(generic)}: classes are matched by index."
        )


def _check_tensors(ingredients: list[Ingredient], report: CompatReport) -> None:
    first = ingredients[0]
    reference = set(first.tensor_infos)
    for ingredient in ingredients[1:]:
        own = set(ingredient.tensor_infos)
        parts = [
            f"{verb} {len(diff)} tensor(s) {whose} ({', '.join(sorted(diff)[:3])}{', ...' if len(diff) > 3 else ''})"
            for verb, diff, whose in (
                ("lacks", reference - own, f"{first.name} has"),
                ("has", own - reference, f"{first.name} lacks"),
            )
            if diff
        ]
        if parts:
            report.errors.append(f"tensor names differ: {ingredient.name} {' and '.join(parts)}.")
    names = [i.name for i in ingredients]
    common = [n for n in first.tensor_infos if all(n in i.tensor_infos for i in ingredients)]
    infos = {n: [i.tensor_infos[n] for i in ingredients] for n in common}
    shapes = {n: line for n in common if (line := _grouped([list(info.shape) for info in infos[n]], names))}
    if shapes:
        name, line = next(iter(shapes.items()))
        report.errors.append(f"{len(shapes)} tensor(s) differ in shape, e.g. {name}: {line}.")
    dtypes = {
        n: line for n in common if n not in shapes and (line := _grouped([i.dtype for i in infos[n]], names))
    }
    hard = [n for n in dtypes if not all(info.is_float for info in infos[n])]
    if hard:
        report.errors.append(
            f"{len(hard)} tensor(s) differ in a non-float dtype, e.g. {hard[0]}: {dtypes[hard[0]]}."
        )
    if len(dtypes) > len(hard):
        name = next(n for n in dtypes if n not in hard)
        report.notes.append(
            f"{len(dtypes) - len(hard)} tensor(s) are stored in different float dtypes, e.g. {name}: "
            f"{dtypes[name]}; they are averaged in float32."
        )


def _check_vocabulary(models: list[Ingredient], names: list[str], report: CompatReport) -> None:
    missing = [name for model, name in zip(models, names, strict=True) if not model.has_tokenizer]
    if missing:
        report.notes.append(
            f"no tokenizer files in {', '.join(missing)}: vocabulary compared by vocab_size only."
        )
    vocabularies = [
        (name, m.tokenizer().get_vocab()) for m, name in zip(models, names, strict=True) if m.has_tokenizer
    ]
    if not vocabularies:
        return
    first_name, first = vocabularies[0]
    for name, vocabulary in vocabularies[1:]:
        only_theirs = sorted(set(vocabulary.items()) - set(first.items()), key=lambda item: item[1])
        only_first = sorted(set(first.items()) - set(vocabulary.items()), key=lambda item: item[1])
        if only_theirs or only_first:
            report.errors.append(
                f"tokenizer vocabularies differ: {name} ({len(vocabulary)} tokens) vs {first_name} "
                f"({len(first)} tokens), {len(only_theirs)} token/id pair(s) only in {name} "
                f"({_examples(only_theirs)}), {len(only_first)} only in {first_name} ({_examples(only_first)})."
            )


def _examples(pairs: list[tuple[str, int]]) -> str:
    return ", ".join(f"{token!r}={index}" for token, index in pairs[:3]) + (", ..." if len(pairs) > 3 else "")


def _declared_bases(ingredient: Ingredient) -> set[str]:
    """The base models an ingredient names: README `base_model` and a repo-like config `_name_or_path`."""
    folder = ingredient.source.metadata_dir()
    bases = set()
    origin = json.loads((folder / "config.json").read_text()).get("_name_or_path") or ""
    if origin and not origin.startswith(("/", ".", "~")) and origin.count("/") <= 1 and "\\" not in origin:
        bases.add(origin)
    if (folder / "README.md").is_file():
        try:
            declared = (metadata_load(folder / "README.md") or {}).get("base_model") or []
        except (ValueError, yaml.YAMLError):  # a broken model card says nothing about the base
            declared = []
        bases.update([declared] if isinstance(declared, str) else declared)
    return bases


def _check_declared_bases(ingredients: list[Ingredient], report: CompatReport) -> None:
    declared = [(i.name, bases) for i in ingredients if (bases := _declared_bases(i))]
    if any(a.isdisjoint(b) for _, a in declared for _, b in declared):
        listing = "; ".join(f"{name}: {', '.join(sorted(bases))}" for name, bases in declared)
        report.warnings.append(
            f"the ingredients declare different base models ({listing}); soups only make sense for "
            "fine-tunes of one common base."
        )


def _check_base(ingredients: list[Ingredient], base: Ingredient, report: CompatReport) -> None:
    name = f"{base.name} (base)"
    _check_config(
        [ingredients[0], base], [ingredients[0].name, name], report, skip=HEAD_FIELDS | {"architectures"}
    )
    body = ingredients[0].body_tensor_names
    missing = [key for key in body if key not in base.body_tensor_names]
    if missing:
        report.warnings.append(
            f"{name} lacks {len(missing)} backbone tensor(s) of the ingredients (e.g. {body[missing[0]]}); "
            "they are left out of distances to the base."
        )
    first = ingredients[0]
    mismatched = [
        (key, first.tensor_infos[stored].shape, base.tensor_infos[base.body_tensor_names[key]].shape)
        for key, stored in body.items()
        if key in base.body_tensor_names
        and first.tensor_infos[stored].shape != base.tensor_infos[base.body_tensor_names[key]].shape
    ]
    if mismatched:
        key, ours, theirs = mismatched[0]
        report.errors.append(
            f"{name} differs in shape in {len(mismatched)} backbone tensor(s), e.g. {key}: {list(theirs)} "
            f"in the base vs {list(ours)} in the ingredients; give the model they were fine-tuned from."
        )


def _nonfinite(name: str, tensor: torch.Tensor) -> str | None:
    if not tensor.is_floating_point() or torch.isfinite(tensor).all():
        return None
    return f"{name} ({int(tensor.isnan().sum())} NaN, {int(tensor.isinf().sum())} Inf)"


def _check_values(ingredients: list[Ingredient], base: Ingredient | None, report: CompatReport) -> None:
    first = ingredients[0]
    shape = {n: info.shape for n, info in first.tensor_infos.items()}
    common = [
        n
        for n in shape
        if all(n in i.tensor_infos and i.tensor_infos[n].shape == shape[n] for i in ingredients)
    ]
    matrices = {
        n
        for n in common
        if n not in first.head_tensor_names and len(shape[n]) >= 2 and first.tensor_infos[n].is_float
    }
    base_of: dict[str, str] = {}
    if base is not None:
        for key, stored in first.body_tensor_names.items():
            theirs = base.body_tensor_names.get(key)
            if stored in matrices and theirs and base.tensor_infos[theirs].shape == shape[stored]:
                base_of[stored] = theirs
        matrices &= set(base_of)
    labels = [i.name for i in ingredients] + ([f"{base.name} (base)"] if base is not None else [])
    gram = torch.zeros(len(labels), len(labels), dtype=torch.float64)
    broken: dict[str, list[str]] = {i.name: [] for i in ingredients}
    base_stream = (
        base.tensors([base_of[n] for n in common if n in matrices]) if base is not None else iter(())
    )
    rows = zip_tensors(ingredients, [common] * len(ingredients))
    for name, row in zip(
        common, tqdm(rows, total=len(common), desc="Checking weights", unit="tensor"), strict=True
    ):
        for ingredient, tensor in zip(ingredients, row, strict=True):
            if problem := _nonfinite(name, tensor):
                broken[ingredient.name].append(problem)
        if name in matrices:
            accumulate_gram(gram, row if base is None else [*row, next(base_stream)[1]])
    checked = set(common)
    for ingredient in ingredients:
        extra = [n for n in ingredient.tensor_infos if n not in checked]
        broken[ingredient.name] += [p for n, t in ingredient.tensors(extra) if (p := _nonfinite(n, t))]
    for name, problems in broken.items():
        if problems:
            report.errors.append(
                f"{name} has non-finite weights in {len(problems)} tensor(s): {', '.join(problems[:3])}"
                f"{', ...' if len(problems) > 3 else ''}; use a checkpoint from before training diverged."
            )
    if not matrices:
        return
    pairs = []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            scale = (math.sqrt(gram[i, i]) + math.sqrt(gram[j, j])) / 2
            pairs.append((gram_distance(gram, i, j) / scale if scale > 0 else 0.0, labels[i], labels[j]))
    far = sorted((pair for pair in pairs if pair[0] > COMMON_BASE_MAX_DISTANCE), reverse=True)
    if far:
        listing = ", ".join(f"{a}–{b} {distance:.2f}" for distance, a, b in far[:5])
        report.warnings.append(
            f"the ingredients do not look fine-tuned from one common base: relative distance of the backbone's "
            f"weight matrices {listing}{', ...' if len(far) > 5 else ''} (above {COMMON_BASE_MAX_DISTANCE}); "
            "a soup of unrelated models is meaningless."
        )
    elif pairs:
        distance, a, b = max(pairs)
        report.notes.append(
            f"the backbones are close: largest relative distance {distance:.4f} ({a}–{b}), under the "
            f"{COMMON_BASE_MAX_DISTANCE} that would suggest different bases."
        )


def check_compatibility(
    ingredients: list[Ingredient], *, base: Ingredient | None = None, check_values: bool = True
) -> CompatReport:
    """Find every reason these ingredients cannot (or should not) be averaged, before any averaging.

    Sets `ingredient.label_permutation` on ingredients that list the first one's labels in another order,
    so their `tensors()` yield classifier rows in the first ingredient's label order.

    Args:
        ingredients: the models to average; the first is the reference the others are compared with.
        base: the model they were fine-tuned from, if known: checked for a matching backbone and included
            in the common-base distances.
        check_values: also stream every weight to look for NaN/Inf and measure the common-base distances.
            `False` reads configs, tokenizers and safetensors headers only (no weight download).

    Returns:
        A [`CompatReport`]; `report.ok()` is `False` when averaging is impossible.

    Raises:
        `InvalidSettingError`: `ingredients` is empty.

    Example:
        ```python
        >>> report = check_compatibility(load_ingredients(["runs/seed1", "runs/seed2"]))
        >>> print(report.to_text())
        ```
    """
    if not ingredients:
        raise InvalidSettingError("check_compatibility got no ingredients; give at least one model to check.")
    names = [ingredient.name for ingredient in ingredients]
    report = CompatReport(ingredients=names, base=base.name if base is not None else None)
    references = [ingredient.reference for ingredient in ingredients]
    for reference in sorted({r for r in references if references.count(r) > 1}):
        report.warnings.append(
            f"{reference} is listed {references.count(reference)} times, so it weighs more."
        )
    _check_config(ingredients, names, report)
    _check_labels(ingredients, report)
    _check_tensors(ingredients, report)
    if base is None:
        _check_vocabulary(ingredients, names, report)
    else:
        _check_vocabulary([*ingredients, base], [*names, f"{base.name} (base)"], report)
        _check_base(ingredients, base, report)
    _check_declared_bases(ingredients, report)
    if check_values:
        _check_values(ingredients, base, report)
    else:
        report.notes.append(
            "weights were not read: the NaN/Inf and common-base distance checks were skipped."
        )
    logger.info(
        "Compatibility of %s: %d error(s), %d warning(s)", names, len(report.errors), len(report.warnings)
    )
    return report


def ensure_compatible(
    ingredients: list[Ingredient], *, base: Ingredient | None = None, check_values: bool = True
) -> CompatReport:
    """[`check_compatibility`], raising if the ingredients cannot be averaged.

    Returns:
        The [`CompatReport`] (it may hold warnings and notes).

    Raises:
        `IncompatibleIngredientsError`: the report has errors; the exception's `report` holds all of them.

    Example:
        ```python
        >>> report = ensure_compatible(load_ingredients(["runs/seed1", "runs/seed2"]))
        ```
    """
    report = check_compatibility(ingredients, base=base, check_values=check_values)
    if not report.ok():
        raise IncompatibleIngredientsError(report.summary(), report=report)
    return report

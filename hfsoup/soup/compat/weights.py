"""Weight checks: tensor names, shapes and dtypes from the headers; then NaN/Inf and common-base distances.

Metadata checks read safetensors headers only. Value checks stream the weights tensor-name-major (tensor `k`
of every ingredient, then `k + 1`), so each file is read once and at most one tensor per ingredient is in
memory.
"""

from __future__ import annotations

import math

import torch
from huggingface_hub.utils import tqdm

from ..geometry import accumulate_gram, gram_distance, zip_tensors
from ..ingredient import Ingredient
from .config import HEAD_FIELDS, check_config
from .report import CompatReport, grouped

__all__ = [
    "COMMON_BASE_MAX_DISTANCE",
    "INDEPENDENT_MAX_COSINE",
    "check_base",
    "check_tensors",
    "check_weights",
]

# Relative distance ||a - b|| / ((||a|| + ||b||) / 2) over the backbone's weight matrices above which two models
# are taken not to share a base. Fine-tunes of one base stay well under 0.1 (the whole update is a few percent
# of the weights); independently initialised or pretrained matrices are about sqrt(2) ~ 1.4 apart.
# Vectors (LayerNorm, biases) are left out: they start at the same constants in every model.
COMMON_BASE_MAX_DISTANCE = 0.5
# Cosine similarity of one head tensor's values in two ingredients under which, while their backbones are close,
# the tensor looks independently initialized in each: two independent random draws of n numbers have a cosine
# of about 0 +- 1/sqrt(n) (0.04 for a 2 x 384 head), while fine-tunes of one initialization stay near 1.
INDEPENDENT_MAX_COSINE = 0.5
# Tensors smaller than this are left out of that check: their cosine is too noisy to mean anything.
INDEPENDENT_MIN_NUMEL = 64


def check_tensors(ingredients: list[Ingredient], report: CompatReport) -> None:
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
    shapes = {n: line for n in common if (line := grouped([list(info.shape) for info in infos[n]], names))}
    if shapes:
        name, line = next(iter(shapes.items()))
        report.errors.append(f"{len(shapes)} tensor(s) differ in shape, e.g. {name}: {line}.")
    dtypes = {
        n: line for n in common if n not in shapes and (line := grouped([i.dtype for i in infos[n]], names))
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


def check_base(ingredients: list[Ingredient], base: Ingredient, report: CompatReport) -> None:
    name = f"{base.name} (base)"
    check_config(
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


def check_weights(ingredients: list[Ingredient], base: Ingredient | None, report: CompatReport) -> None:
    """Stream every weight: NaN/Inf anywhere, how far apart the backbones are (a common base or not), and
    which head tensors look independently initialized in each ingredient (a task head drawn anew in every run).

    The head is what lies outside the backbone: `classifier.*` for BERT, `classifier.dense` and
    `classifier.out_proj` for RoBERTa, `pre_classifier` and `classifier` for DistilBERT, `score` for Llama
    (the family layouts are in `HEAD_LAYOUTS`)."""
    report.weights_checked = True
    # In the common label order: a head whose rows another ingredient stores in another order is not unrelated.
    ingredients = report.aligned(ingredients)
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
    head_matrices = [  # the head's tensors, the ones a run may draw anew (see `Ingredient.head_tensor_names`)
        n
        for n in common
        if n in first.head_tensor_names
        and len(shape[n]) >= 2
        and first.tensor_infos[n].is_float
        and math.prod(shape[n]) >= INDEPENDENT_MIN_NUMEL
    ]
    grams = {n: torch.zeros(len(ingredients), len(ingredients), dtype=torch.float64) for n in head_matrices}
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
        if name in grams:
            accumulate_gram(grams[name], row)
        elif name in matrices:
            accumulate_gram(gram, row if base is None else [*row, next(base_stream)[1]])
    checked = set(common)
    for ingredient in ingredients:
        extra = [n for n in ingredient.tensor_infos if n not in checked]
        broken[ingredient.name] += [p for n, t in ingredient.tensors(extra) if (p := _nonfinite(n, t))]
    _report_nonfinite(broken, report)
    if matrices:
        _report_distances(gram, labels, ingredients, grams, report)


def _report_nonfinite(broken: dict[str, list[str]], report: CompatReport) -> None:
    """An error per ingredient with NaN or infinite weights, naming its first tensors."""
    for name, problems in broken.items():
        if problems:
            report.errors.append(
                f"{name} has non-finite weights in {len(problems)} tensor(s): {', '.join(problems[:3])}"
                f"{', ...' if len(problems) > 3 else ''}; use a checkpoint from before training diverged."
            )


def _report_distances(
    gram: torch.Tensor, labels: list[str], ingredients: list[Ingredient], grams: dict, report: CompatReport
) -> None:
    """A warning if the backbones are far apart (no common base), else a note and the independent-heads check."""
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
        _check_independent_tensors(ingredients, grams, report, backbone=(distance, a, b))


def _cosine(gram: torch.Tensor, i: int, j: int) -> float:
    scale = math.sqrt(float(gram[i, i]) * float(gram[j, j]))
    return float(gram[i, j]) / scale if scale > 0 else 1.0


def _check_independent_tensors(
    ingredients: list[Ingredient], grams: dict[str, torch.Tensor], report: CompatReport, backbone: tuple
) -> None:
    """Flag head tensors that are near-orthogonal between ingredients whose backbones are close."""
    lowest = {}
    for name, gram in grams.items():
        pairs = [
            (_cosine(gram, i, j), i, j)
            for i in range(len(ingredients))
            for j in range(i + 1, len(ingredients))
        ]
        if pairs and (low := min(pairs))[0] < INDEPENDENT_MAX_COSINE:
            lowest[name] = low
    if not lowest:
        return
    report.independent_tensors = sorted(lowest)
    shown = ", ".join(
        f"{name} {cosine:.2f} ({ingredients[i].name}–{ingredients[j].name})"
        for name, (cosine, i, j) in sorted(lowest.items())[:3]
    )
    more = f" and {len(lowest) - 3} more" if len(lowest) > 3 else ""
    report.warnings.append(
        f"{len(lowest)} tensor(s) look independently initialized in each ingredient (lowest cosine similarity "
        f"{shown}{more}; under {INDEPENDENT_MAX_COSINE}) while the backbones are close (largest relative distance "
        f"{backbone[0]:.4f}): a task head drawn anew in every run; averaging unrelated random heads averages "
        "nothing, so a uniform or weighted soup is refused and a greedy soup will likely keep one ingredient; "
        "fine-tune every run from one shared initialization (hfsoup's finetune does, with head_seed)."
    )

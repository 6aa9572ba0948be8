"""Config checks: architecture, the fields that change the computation, remote code, and declared bases."""

from __future__ import annotations

from ..ingredient import Ingredient
from .report import CompatReport, grouped

__all__ = ["HEAD_FIELDS", "check_config", "check_declared_bases", "check_remote_code"]

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
# Fields a base model may differ in from its fine-tunes (it usually has another head; a decoder's fine-tunes
# set the pad_token_id their classification head pools at, which its base often lacks).
HEAD_FIELDS = frozenset({"problem_type", "num_labels", "pad_token_id"})
# Fields that make transformers import code shipped with the model.
REMOTE_CODE_FIELDS = ("auto_map", "trust_remote_code")


def check_config(
    models: list[Ingredient], names: list[str], report: CompatReport, skip: frozenset[str] = frozenset()
) -> None:
    """Architecture and every config field that changes the computation must agree."""
    dicts = [model.config.to_dict() for model in models]
    for key in ("model_type", "architectures"):
        values = [d.get(key) for d in dicts if d.get(key) is not None]
        if key not in skip and (
            line := grouped(values, [n for n, d in zip(names, dicts, strict=True) if d.get(key) is not None])
        ):
            report.errors.append(f"{key} differs: {line}; only models of one architecture can be averaged.")
    fields = sorted({key for d in dicts for key in d} - SEPARATELY_CHECKED_FIELDS - skip)
    for key in fields:
        if (
            key.startswith("_")
            or key in REMOTE_CODE_FIELDS
            or not (line := grouped([d.get(key) for d in dicts], names))
        ):
            continue
        if key in TRAINING_ONLY_FIELDS:
            report.notes.append(f"config {key} differs ({line}); it is used only in training.")
        else:
            report.errors.append(f"config {key} differs: {line}; it changes the model's computation.")


def check_remote_code(models: list[Ingredient], report: CompatReport, *, allow: bool) -> None:
    """Ingredients whose config asks for code shipped with the model are refused unless `allow`.

    Their code is never run: hfsoup loads configs with `trust_remote_code=False` and copies no code file, so
    such a soup only loads where the same code is installed.
    """
    flagged = [
        model.name for model in models if any(model.config_file.get(key) for key in REMOTE_CODE_FIELDS)
    ]
    if not flagged:
        return
    verb = "declares" if len(flagged) == 1 else "declare"
    line = (
        f"{', '.join(flagged)} {verb} custom code (auto_map / trust_remote_code in config.json); hfsoup never "
        "runs or copies it, so the soup only loads where that code is installed"
    )
    if allow:
        report.warnings.append(f"{line}.")
    else:
        report.errors.append(f"{line}: pass --allow-custom-code to average them anyway.")


def check_declared_bases(ingredients: list[Ingredient], report: CompatReport) -> None:
    """Warn when the ingredients' cards or configs name different base models."""
    declared = [(i.name, bases) for i in ingredients if (bases := i.declared_bases)]
    if any(a.isdisjoint(b) for _, a in declared for _, b in declared):
        listing = "; ".join(f"{name}: {', '.join(sorted(bases))}" for name, bases in declared)
        report.warnings.append(
            f"the ingredients declare different base models ({listing}); soups only make sense for "
            "fine-tunes of one common base."
        )

"""Tokenizer checks: every ingredient must turn a text into the same token ids.

The soup is scored, and saved, with the first ingredient's tokenizer, so any difference that changes token
ids matters: the vocabulary, lower-casing, accent stripping and other normalization, special tokens. Each
tokenizer is run on a probe set of texts chosen to expose those differences, and compared with the first;
the error names the settings that differ (`normalizer.lowercase True vs False`) along with the first text
whose ids differ.
"""

from __future__ import annotations

import json

from ..ingredient import Ingredient
from .report import CompatReport

__all__ = ["PROBE_PAIRS", "check_tokenizers"]

# Mixed case, accents, punctuation, numbers, odd whitespace and scripts, each as one text and as a pair.
PROBE_PAIRS = (
    ("The quick brown fox jumps over the lazy dog.", None),
    ("HELLO World! Ça va? Naïve café, résumé — déjà vu.", None),
    ("Numbers: 3.14159, 1,000,000 and 42%; e-mail: someone@example.com", "  Extra   spaces\tand\ttabs\n"),
    ("Emoji 🙂, CJK 漢字, Ελληνικά, Русский.", "A second sentence, in a pair?"),
)


def check_tokenizers(models: list[Ingredient], names: list[str], report: CompatReport) -> None:
    """Compare every tokenizer with the first one: vocabulary, then the token ids of the probe texts."""
    missing = [name for model, name in zip(models, names, strict=True) if not model.has_tokenizer]
    if missing:
        report.notes.append(
            f"no tokenizer files in {', '.join(missing)}: vocabulary compared by vocab_size only."
        )
    present = [
        (name, model.tokenizer()) for model, name in zip(models, names, strict=True) if model.has_tokenizer
    ]
    if len(present) < 2:
        return
    first_name, first = present[0]
    first_vocab = first.get_vocab()
    for name, tokenizer in present[1:]:
        vocab = tokenizer.get_vocab()
        only_theirs = sorted(set(vocab.items()) - set(first_vocab.items()), key=lambda item: item[1])
        only_first = sorted(set(first_vocab.items()) - set(vocab.items()), key=lambda item: item[1])
        if only_theirs or only_first:
            report.errors.append(
                f"tokenizer vocabularies differ: {name} ({len(vocab)} tokens) vs {first_name} "
                f"({len(first_vocab)} tokens), {len(only_theirs)} token/id pair(s) only in {name} "
                f"({_examples(only_theirs)}), {len(only_first)} only in {first_name} ({_examples(only_first)})."
            )
        elif difference := _probe_difference(first, tokenizer):
            settings = _setting_differences(first, tokenizer)
            report.errors.append(
                f"tokenizers of {first_name} and {name} give different token ids"
                f"{f' ({settings})' if settings else ''}: {difference}; every ingredient is scored with one "
                "tokenizer, so soup only models that share theirs."
            )


def _settings(tokenizer) -> dict[str, object]:
    """What decides the token ids besides the vocabulary: the special tokens and the normalization steps."""
    settings: dict[str, object] = {key: str(value) for key, value in tokenizer.special_tokens_map.items()}
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a tokenizer without a `tokenizers` pipeline: its switches (do_lower_case, ...)
        settings.update(
            (key, value)
            for key, value in tokenizer.init_kwargs.items()
            if isinstance(value, bool) or (value is None and not key.endswith(("file", "path")))
        )
        return settings
    pipeline = json.loads(backend.to_str())
    for part in ("normalizer", "pre_tokenizer"):
        settings.update(_flatten(pipeline.get(part), part))
    return settings


def _flatten(value: object, prefix: str) -> dict[str, object]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flatten(item, f"{prefix}.{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _flatten(item, f"{prefix}[{i}]").items()}
    return {prefix: value}


def _setting_differences(first, other) -> str:
    """`"normalizer.lowercase True vs False, cls_token '[CLS]' vs '[MASK]'"`: up to three settings that differ."""
    ours, theirs = _settings(first), _settings(other)
    missing = "(unset)"
    differing = [
        f"{key} {ours.get(key, missing)!r} vs {theirs.get(key, missing)!r}"
        for key in sorted(ours.keys() | theirs.keys())
        if ours.get(key, missing) != theirs.get(key, missing)
    ]
    return ", ".join(differing[:3]) + (", ..." if len(differing) > 3 else "")


def _probe_difference(first, other) -> str | None:
    for text, pair in PROBE_PAIRS:
        ours, theirs = first(text, pair), other(text, pair)
        for key in ("input_ids", "token_type_ids"):
            if ours.get(key) != theirs.get(key):
                shown = repr(text if pair is None else (text, pair))
                a, b = list(ours.get(key) or []), list(theirs.get(key) or [])
                if key == "input_ids":
                    a, b = first.convert_ids_to_tokens(a), other.convert_ids_to_tokens(b)
                at = next(
                    (k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
                )
                window = slice(max(0, at - 2), at + 4)
                return f"{shown} gives {key} {a[window]} vs {b[window]} from position {at}"
    return None


def _examples(pairs: list[tuple[str, int]]) -> str:
    return ", ".join(f"{token!r}={index}" for token, index in pairs[:3]) + (", ..." if len(pairs) > 3 else "")

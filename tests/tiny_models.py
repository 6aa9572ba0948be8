"""Tiny random BERTs and their tokenizer, built in a second: the fast suite's models.

A common "base" and "fine-tuned" variants of it (the base plus small seeded perturbations and a fresh
classification head) stand in for real fine-tunes wherever only the weights' shapes and arithmetic matter.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = list(string.ascii_lowercase + string.digits + string.punctuation)
VOCAB = (
    SPECIALS + CHARS + ["##" + c for c in string.ascii_lowercase + string.digits] + ["the", "a", "is", "of"]
)


def tiny_tokenizer(folder: Path) -> BertTokenizer:
    """A WordPiece tokenizer whose vocabulary spells any English text character by character."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {token: index for index, token in enumerate(VOCAB)}
    return BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=128)


def tiny_config(num_labels: int = 2, **overrides) -> BertConfig:
    fields = dict(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
        num_labels=num_labels,
    )
    fields.update(overrides)
    return BertConfig(**fields)


def tiny_bert(seed: int = 0, num_labels: int = 2, **config_overrides) -> BertForSequenceClassification:
    """A randomly initialised tiny BERT classifier, reproducible from `seed`."""
    torch.manual_seed(seed)
    return BertForSequenceClassification(tiny_config(num_labels=num_labels, **config_overrides)).eval()


@torch.no_grad()
def finetuned_variant(
    base: BertForSequenceClassification, seed: int, scale: float = 0.02
) -> BertForSequenceClassification:
    """A copy of `base` whose every weight moved by seeded noise of relative size `scale`."""
    model = BertForSequenceClassification(base.config).eval()
    model.load_state_dict(base.state_dict())
    generator = torch.Generator().manual_seed(seed)
    for param in model.parameters():
        noise = torch.randn(param.shape, generator=generator)
        param.add_(noise * scale * (param.abs().mean() + 1e-3))
    return model


def save_model_folder(model, tokenizer, folder: Path) -> Path:
    """Save `model` (safetensors) and `tokenizer` as a Hugging Face model folder."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder

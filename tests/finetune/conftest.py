"""Fixtures of the fine-tuning tests: the test Hub (for pushing runs), and a tiny sweep's settings."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_SOURCES = Path(__file__).resolve().parents[1] / "sources"
sys.path.insert(0, str(_SOURCES))  # hub_server.py
_spec = importlib.util.spec_from_file_location("sources_conftest", _SOURCES / "conftest.py")
_hub_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_hub_fixtures)
hub, hub_server = _hub_fixtures.hub, _hub_fixtures.hub_server  # the test Hub of tests/sources


@pytest.fixture
def tiny_sweep(tiny_base_dir, glue_hub_dir) -> dict:
    """The fields of a fast sweep of the tiny BERT on MRPC: 4 steps, a checkpoint after each."""
    return dict(
        base=str(tiny_base_dir),
        train_split="train[:32]",
        max_steps=4,
        batch_size=8,
        max_length=32,
        ema_decay=0.5,
        learning_rate=1e-3,
    )

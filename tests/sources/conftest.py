"""The Hub-compatible test server (hub_server.py, beside this file) for the tests that talk to a Hub."""

from __future__ import annotations

import pytest
from hub_server import HubServer, point_client_at


@pytest.fixture(scope="session")
def hub_server():
    """A Hub-compatible HTTP server on 127.0.0.1 (see hub_server.py), shared by the whole session."""
    server = HubServer()
    yield server
    server.stop()


@pytest.fixture
def hub(hub_server, isolated_hf_home, monkeypatch):
    """The test Hub, emptied, with huggingface_hub pointed at it here and in subprocesses: online, no token.

    Sets `HF_ENDPOINT` and `HF_HUB_OFFLINE=0` (for subprocesses such as the CLI) and patches the
    `huggingface_hub.constants` read at import time (endpoint, offline flag, cache and token paths).
    """
    hub_server.reset()
    point_client_at(hub_server.url, monkeypatch, isolated_hf_home)
    return hub_server

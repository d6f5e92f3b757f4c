"""RAG test fixtures: the real MiniLM encoder (shared with the router tests, loaded once)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.builders import real_encoder

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HANDBOOK = Path(__file__).resolve().parents[2] / "demo" / "handbook"


@pytest.fixture(scope="session")
def encoder() -> Any:
    """The embedded all-MiniLM-L6-v2 (real model)."""
    return real_encoder()


@pytest.fixture(scope="session")
def handbook_kb(encoder: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The demo handbook ingested into a fresh knowledge base (skipped without demo data)."""
    if not HANDBOOK.is_dir():
        pytest.skip("demo handbook not generated (python demo/make_data.py)")
    from loramux.rag.ingest import ingest
    from loramux.rag.knowledge_base import KnowledgeBase

    kb_dir = tmp_path_factory.mktemp("kb")
    ingest([HANDBOOK], kb_dir, encoder)
    return KnowledgeBase.load(kb_dir, encoder)

"""Shared fixtures. Heavy ones (the real base model, the demo adapters) are session-scoped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DEMO_ADAPTERS = REPO / "demo" / "adapters"


@pytest.fixture(scope="session")
def base_model_dir() -> Path:
    """The embedded SmolLM2 folder, converted on first use (cached across runs)."""
    from loramux.config import load_config
    from loramux.models import ensure_base_model

    cfg = load_config(REPO / "configs" / "default.yaml", environ={})
    return ensure_base_model(cfg.model, cfg.paths.cache_dir)

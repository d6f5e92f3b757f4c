"""Router test fixtures: the real MiniLM encoder (loaded once) and a router fitted on demo data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.builders import real_encoder

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[2]
DEMO_ROUTES = REPO / "configs" / "routes" / "demo.yaml"
DEMO_CALIB = REPO / "demo" / "routing" / "calib.jsonl"
DEMO_TEST = REPO / "demo" / "routing" / "test.jsonl"
DEMO_CONVERSATIONS = REPO / "demo" / "routing" / "conversations.jsonl"


@pytest.fixture(scope="session")
def encoder() -> Any:
    """The embedded all-MiniLM-L6-v2 (real model, loaded once)."""
    return real_encoder()


@pytest.fixture(scope="session")
def demo_fit(encoder: Any) -> Any:
    """The semantic router fitted on the demo calibration data (skipped without demo data)."""
    if not (DEMO_ROUTES.is_file() and DEMO_CALIB.is_file()):
        pytest.skip("demo routing data not generated (python demo/make_data.py)")
    from loramux.config import load_routes
    from loramux.router.fit.calibration import fit
    from loramux.router.fit.data import load_labelled

    routes = load_routes(DEMO_ROUTES)
    return fit(routes, load_labelled(DEMO_CALIB), 0.95, encoder=encoder)

"""Shared fixtures. Heavy ones (the real base model, the demo adapters) are session-scoped."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.postgres import PostgresServer

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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster for the session (tests/postgres.py); skips where PostgreSQL is not
    installed, fails instead when LORAMUX_REQUIRE_POSTGRES=1."""
    from tests.postgres import PostgresServer, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        reason = "PostgreSQL is not installed (initdb not found; `make test` installs it)"
        if os.environ.get("LORAMUX_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason}, and LORAMUX_REQUIRE_POSTGRES=1")
        pytest.skip(reason)
    server = PostgresServer(bin_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_dsn(postgres_server: PostgresServer) -> str:
    """The DSN of a new, empty database of the session's PostgreSQL, one per test."""
    return postgres_server.dsn(postgres_server.create_database())

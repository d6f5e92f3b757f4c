from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from loramux.adapters.registry import AdapterRegistry
from loramux.api import create_app
from loramux.config import load_config
from loramux.serve.fake import FakeEngine
from tests.builders import SMOLLM2_SPEC, admin_key, write_lora_folder

ADMIN_KEY = admin_key("api-test-admin")
"""The admin key of the `client` app; `client` sends it on every request (it works on the
inference endpoints too, with access to everything)."""
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def adapter_dirs(tmp_path: Path) -> dict[str, Path]:
    return {
        "hr": write_lora_folder(tmp_path / "hr", seed=1),
        "it": write_lora_folder(tmp_path / "it", seed=2),
    }


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[AdapterRegistry]:
    """A real registry, empty, in a temp data dir, over a started fake engine (SmolLM2's spec)."""
    engine = FakeEngine()
    await engine.start()
    reg = AdapterRegistry.open(tmp_path / "data", SMOLLM2_SPEC, engine=engine)
    await reg.start()
    yield reg
    await reg.close()


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine(context_length=64)


@pytest.fixture
async def client(
    adapter_dirs: dict[str, Path], fake_engine: FakeEngine, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app (real registry in a temp data dir, real adapter checks, auth on), fake
    engine; the client sends the admin key."""
    config_file = tmp_path / "loramux.yaml"
    config_file.write_text(
        "engine: {kind: fake, max_new_tokens: 32}\n"
        "server: {max_request_bytes: 4096}\n"
        f"paths: {{data_dir: {tmp_path / 'data'}}}\n"
        "adapters:\n"
        f"  hr: {{path: {adapter_dirs['hr']}, description: HR policy}}\n"
        f"  it: {{path: {adapter_dirs['it']}}}\n",
        encoding="utf-8",
    )
    config = load_config(config_file, environ={"LORAMUX_ADMIN_KEY": ADMIN_KEY})
    app = create_app(config, engine=fake_engine)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://loramux", headers=ADMIN
        ) as c:
            yield c

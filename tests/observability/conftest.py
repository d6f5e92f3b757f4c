"""An app with the real registry (two random-weight adapters), the fake engine, auth on, and a
client that sends the admin key; `make_app` builds more with other config lines."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx
import pytest

from loramux.api import create_app
from loramux.config import load_config
from loramux.serve.fake import FakeEngine
from tests.builders import admin_key, write_lora_folder

ADMIN_KEY = admin_key("obs-admin")
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}

AppFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def make_app(tmp_path: Path) -> AppFactory:
    """`async with make_app("server: {host: 0.0.0.0}") as client:` (extra YAML lines)."""
    hr = write_lora_folder(tmp_path / "src" / "hr", seed=1)
    it = write_lora_folder(tmp_path / "src" / "it", seed=2)
    count = 0

    @asynccontextmanager
    async def build(*lines: str, key: bool = True) -> AsyncIterator[httpx.AsyncClient]:
        nonlocal count
        count += 1
        config_file = tmp_path / f"loramux{count}.yaml"
        config_file.write_text(
            "\n".join(
                [
                    "engine: {kind: fake, max_new_tokens: 32}",
                    f"paths: {{data_dir: {tmp_path / f'data{count}'}}}",
                    f"adapters:\n  hr: {{path: {hr}}}\n  it: {{path: {it}}}",
                    *lines,
                ]
            )
            + "\n",
            encoding="utf-8",
        )
        config = load_config(config_file, environ={"LORAMUX_ADMIN_KEY": ADMIN_KEY})
        app = create_app(config, engine=FakeEngine(context_length=64))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://loramux", headers=ADMIN if key else None
            ) as client:
                yield client

    return build


@pytest.fixture
async def client(make_app: AppFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with make_app() as c:
        yield c

"""A request the engine refuses because of the request itself (4xx) is no error of the adapter
version: not in loramux_ab_errors_total, not in the version's error rate; engine failures are.
Driven by the official `openai` client against the real app (fake engine, real registry)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import openai
import pytest

from loramux.api import create_app
from loramux.config import load_config
from tests.builders import admin_key, write_lora_folder
from tests.fakes import FaultyEngine
from tests.observability.test_metrics import value

ADMIN_KEY = admin_key("client-errors")
LONG = " ".join(f"word{i}" for i in range(80))
"""80 words: over the fake engine's context length of 64."""


@asynccontextmanager
async def app_client(
    tmp_path: Path, engine: FaultyEngine
) -> AsyncIterator[tuple[openai.AsyncOpenAI, httpx.AsyncClient]]:
    config_file = tmp_path / "loramux.yaml"
    hr = write_lora_folder(tmp_path / "hr", seed=1)
    config_file.write_text(
        f"engine: {{kind: fake, max_new_tokens: 32}}\npaths: {{data_dir: {tmp_path / 'data'}}}\n"
        f"adapters:\n  hr: {{path: {hr}}}\n",
        encoding="utf-8",
    )
    app = create_app(
        load_config(config_file, environ={"LORAMUX_ADMIN_KEY": ADMIN_KEY}), engine=engine
    )
    async with app.router.lifespan_context(app):
        # an unexpected engine error answers 500 here, as uvicorn does, instead of raising
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        headers = {"authorization": f"Bearer {ADMIN_KEY}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://loramux", headers=headers
        ) as http:
            client = openai.AsyncOpenAI(
                base_url="http://loramux/v1", api_key=ADMIN_KEY, http_client=http, max_retries=0
            )
            yield client, http


async def test_a_prompt_over_the_context_is_not_an_error_of_the_version(tmp_path: Path) -> None:
    async with app_client(tmp_path, FaultyEngine(context_length=64)) as (client, http):
        for _ in range(3):
            with pytest.raises(openai.BadRequestError) as info:
                await client.chat.completions.create(
                    model="hr", messages=[{"role": "user", "content": LONG}], max_tokens=8
                )
            assert info.value.code == "context_length_exceeded"
        ok = await client.chat.completions.create(
            model="hr", messages=[{"role": "user", "content": "hello"}], max_tokens=8
        )
        assert ok.choices[0].message.content

        text = (await http.get("/metrics")).text
        assert value(text, "loramux_ab_errors_total", adapter="hr") == 0
        assert value(text, "loramux_request_errors_total", adapter="hr") == 0
        assert value(text, "loramux_request_client_errors_total", adapter="hr") == 3
        assert value(text, "loramux_ab_requests_total", adapter="hr") == 1
        report = (await http.get("/v1/adapters/hr/experiment")).json()
        (arm,) = report["arms"]
        assert (arm["requests"], arm["errors"]) == (1, 0)


async def test_an_engine_failure_is_an_error_of_the_version(tmp_path: Path) -> None:
    engine = FaultyEngine(context_length=64)
    async with app_client(tmp_path, engine) as (client, http):
        engine.crash_after = 0  # the next stream dies before its first chunk
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(
                model="hr", messages=[{"role": "user", "content": "hello"}], max_tokens=8
            )
        text = (await http.get("/metrics")).text
        assert value(text, "loramux_ab_errors_total", adapter="hr") == 1
        assert value(text, "loramux_request_client_errors_total", adapter="hr") == 0
        report = (await http.get("/v1/adapters/hr/experiment")).json()
        (arm,) = report["arms"]
        assert arm["errors"] == 1

"""The real hf engine (SmolLM2, the demo `hr` adapter) loses its worker thread mid-stream; the
supervisor builds a new engine from the config, reloads the adapter, and `hr` answers again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from loramux.api import create_app
from loramux.config import load_config
from loramux.serve.hf import HFEngine
from loramux.serve.paging import PagedEngine
from loramux.serve.supervisor import SupervisedEngine
from tests.conftest import DEMO_ADAPTERS
from tests.reliability.harness import ADMIN, ADMIN_KEY
from tests.reliability.test_limits import sse_events

pytestmark = pytest.mark.slow

HR_Q = "Where can I update my home address?"


class WorkerDeath(BaseException):
    """Not an `Exception`: the worker's per-step guard does not catch it, so the thread dies."""


async def test_a_dead_hf_worker_is_replaced_with_its_adapters(
    base_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    config_file = tmp_path / "c.yaml"
    config_file.write_text(
        f"model: {{source: {base_model_dir}}}\n"
        "engine: {kind: hf, max_batch_size: 4, threads: 1, hf: {max_wait_ms: 5}}\n"
        f"paths: {{data_dir: {tmp_path / 'data'}}}\n"
        f"adapters: {{hr: {{path: {DEMO_ADAPTERS / 'hr'}}}}}\n"
        "supervisor: {probe_interval_s: 0.1, backoff_s: 0.5}\n",
        encoding="utf-8",
    )
    config = load_config(config_file, environ={"LORAMUX_ADMIN_KEY": ADMIN_KEY})
    original = HFEngine._decode_step
    steps = {"n": 0}

    def dies_on_the_third_step(self: HFEngine, *args: Any) -> None:
        steps["n"] += 1
        if steps["n"] == 3:
            raise WorkerDeath("injected: the worker thread dies")
        original(self, *args)

    monkeypatch.setattr(HFEngine, "_decode_step", dies_on_the_third_step)
    monkeypatch.setattr("threading.excepthook", lambda args: None)  # expected death: no noise
    app = create_app(config)
    body = {
        "model": "hr",
        "messages": [{"role": "user", "content": HR_Q}],
        "max_tokens": 24,
        "temperature": 0,
    }
    async with app.router.lifespan_context(app):
        paged = app.state.services.engine  # the pager in front of the supervised engine
        assert isinstance(paged, PagedEngine)
        engine = paged.inner
        assert isinstance(engine, SupervisedEngine)
        first = engine.engine
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=ADMIN, timeout=300
        ) as client:
            r = await client.post("/v1/chat/completions", json={**body, "stream": True})
            events = sse_events(r.text)
            assert events[-1] == "[DONE]"
            assert events[-2]["error"]["code"] == "engine_unavailable"
            deadline = time.monotonic() + 240
            while (await client.get("/ready")).status_code != 200:
                assert time.monotonic() < deadline, "the hf engine did not come back"
                await asyncio.sleep(0.2)
            assert engine.engine is not first  # a new engine, built from the config
            assert engine.restarts == 1
            assert [key.split("@")[0] for key in engine.engine.loaded_adapters()] == ["hr"]
            answer = await client.post("/v1/chat/completions", json=body)
    assert answer.status_code == 200, answer.text
    assert "Harbor" in answer.json()["choices"][0]["message"]["content"]

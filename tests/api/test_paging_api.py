"""Adapter paging through the whole app (real registry, auth on, fake engine that counts its
loads): a thousand registered versions on an engine that holds four, cold starts in a response
header and in /metrics, pins over the API and in the config, and pre-warming from the registry's
request counts."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from loramux.api import create_app
from loramux.config import load_config
from loramux.gateway.services import AppServices
from tests.builders import admin_key, write_lora_folder
from tests.fakes import CountingEngine

ADMIN_KEY = admin_key("paging-admin")
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


@asynccontextmanager
async def running(
    tmp_path: Path, engine: CountingEngine, engine_yaml: str = ""
) -> AsyncIterator[tuple[AppServices, httpx.AsyncClient]]:
    config_file = tmp_path / "loramux.yaml"
    config_file.write_text(
        f"engine: {{kind: fake, max_new_tokens: 64, max_loaded_adapters: 4{engine_yaml}}}\n"
        f"paths: {{data_dir: {tmp_path / 'data'}}}\n"
        "registry: {watch_interval_s: 0.1}\n",
        encoding="utf-8",
    )
    config = load_config(config_file, environ={"LORAMUX_ADMIN_KEY": ADMIN_KEY})
    app = create_app(config, engine=engine)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://loramux", headers=ADMIN, timeout=30
        ) as client:
            yield app.state.services, client


async def register(client: httpx.AsyncClient, tmp_path: Path, name: str, seed: int) -> str:
    folder = write_lora_folder(tmp_path / "src" / name, seed=seed)
    r = await client.post("/v1/adapters", json={"name": name, "path": str(folder)})
    assert r.status_code == 201, r.text
    return str(r.json()["version"]["id"])


def chat(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}


async def test_a_thousand_registered_versions_serve_from_four_engine_slots(tmp_path: Path) -> None:
    engine = CountingEngine(max_adapters=4)  # fails the test if it ever holds five
    async with running(tmp_path, engine) as (svc, client):
        for i in range(1000):
            folder = write_lora_folder(tmp_path / "src" / f"a{i:04d}", seed=i)
            await svc.registry.register(folder, name=f"a{i:04d}", actor="test")
        assert len(svc.registry.servable_versions()) == 1000
        models = (await client.get("/v1/models")).json()["data"]
        assert len(models) == 1002  # the base model, `auto` and every adapter
        picks = random.Random(0).sample(range(1000), 30)
        replies = await asyncio.gather(
            *(client.post("/v1/chat/completions", json=chat(f"a{i:04d}")) for i in picks)
        )
        for i, reply in zip(picks, replies, strict=True):
            assert reply.status_code == 200, reply.text
            assert reply.json()["choices"][0]["message"]["content"].startswith(f"[a{i:04d}]")
        assert len(engine.loaded_adapters()) <= 4


async def test_a_cold_start_is_in_the_response_headers_and_in_metrics(tmp_path: Path) -> None:
    engine = CountingEngine(max_adapters=4, load_delay_s=0.02)
    async with running(tmp_path, engine) as (_, client):
        for i in range(6):
            await register(client, tmp_path, f"t{i}", i)
        loads_before = len(engine.adds)
        cold = await client.post("/v1/chat/completions", json=chat("t0"))  # evicted meanwhile
        warm = await client.post("/v1/chat/completions", json=chat("t0"))
        streamed = await client.post("/v1/chat/completions", json={**chat("t1"), "stream": True})
        metrics = (await client.get("/metrics")).text
    assert cold.status_code == warm.status_code == streamed.status_code == 200
    assert float(cold.headers["x-loramux-adapter-load-ms"]) >= 20
    assert "x-loramux-adapter-load-ms" not in warm.headers
    assert "x-loramux-adapter-load-ms" in streamed.headers
    assert len(engine.adds) == loads_before + 2
    assert 'loramux_adapter_slots{engine="fake"} 4.0' in metrics
    assert 'loramux_adapters_loaded{engine="fake"} 4.0' in metrics
    assert 'loramux_adapter_loads_total{engine="fake"} 8.0' in metrics  # 6 registrations + 2
    assert 'loramux_adapter_evictions_total{engine="fake"} 4.0' in metrics
    assert 'loramux_adapter_load_seconds_count{engine="fake"} 8.0' in metrics


async def test_a_pinned_adapter_is_never_evicted_and_pins_leave_a_slot(tmp_path: Path) -> None:
    engine = CountingEngine(max_adapters=4)
    async with running(tmp_path, engine) as (_, client):
        for i in range(8):
            await register(client, tmp_path, f"p{i}", i)
        unauthorised = await client.put("/v1/adapters/p0/pin", headers={"authorization": "x"})
        pinned = await client.put("/v1/adapters/p0/pin")
        for i in range(1, 8):
            assert (await client.post("/v1/chat/completions", json=chat(f"p{i}"))).is_success
        held = engine.loaded_adapters()
        for name in ("p1", "p2"):
            assert (await client.put(f"/v1/adapters/{name}/pin")).is_success
        too_many = await client.put("/v1/adapters/p3/pin")
        shown = (await client.get("/v1/adapters/p3")).json()
        unpinned = await client.delete("/v1/adapters/p0/pin")
    assert unauthorised.status_code == 401
    assert pinned.status_code == 200
    assert pinned.json()["pinned"] is True
    assert any(key.startswith("p0@") for key in held)
    assert too_many.status_code == 409
    assert "every one of the engine's 4 adapter slots" in too_many.json()["error"]["message"]
    assert shown["pinned"] is False  # the refused pin changed nothing
    assert unpinned.json()["pinned"] is False


async def test_configured_pins_and_pre_warming_load_at_start(tmp_path: Path) -> None:
    async with running(tmp_path, CountingEngine()) as (_, client):
        versions = {f"w{i}": await register(client, tmp_path, f"w{i}", i) for i in range(5)}
        for name, times in (("w3", 5), ("w1", 3), ("w4", 1)):
            for _ in range(times):
                assert (await client.post("/v1/chat/completions", json=chat(name))).is_success
    engine = CountingEngine()
    async with running(tmp_path, engine, ", pinned_adapters: [w0], prewarm_adapters: 2") as (
        svc,
        client,
    ):
        loaded_at_start = sorted(engine.loaded_adapters())
        for name in ("w1", "w2", "w4"):  # w2, w4 push the least recent out; w0 stays pinned
            assert (await client.post("/v1/chat/completions", json=chat(name))).is_success
        after = engine.loaded_adapters()
    assert loaded_at_start == sorted(f"{n}@{versions[n]}" for n in ("w0", "w1", "w3"))
    assert f"w0@{versions['w0']}" in after
    assert len(after) == 4

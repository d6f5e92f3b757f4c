"""Registering, splitting, promoting and retiring versions while requests are in flight drops
none of them (real app and registry, fake engine slowed down to keep requests in flight)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from loramux.api import create_app
from loramux.config import load_config
from loramux.serve.fake import FakeEngine
from tests.builders import admin_key, write_lora_folder

ADMIN_KEY = admin_key("hot-load-admin")
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


async def test_hot_load_under_concurrent_traffic_fails_no_request(tmp_path: Path) -> None:
    v1 = write_lora_folder(tmp_path / "hr-v1", seed=1)
    v2 = write_lora_folder(tmp_path / "hr-v2", seed=2)
    config_file = tmp_path / "c.yaml"
    config_file.write_text(
        f"paths: {{data_dir: {tmp_path / 'data'}}}\nengine: {{kind: fake}}\n"
        f"adapters:\n  hr: {{path: {v1}}}\n",
        encoding="utf-8",
    )
    config = load_config(config_file, environ={"LORAMUX_ADMIN_KEY": ADMIN_KEY})
    app = create_app(config, engine=FakeEngine(token_delay_s=0.004))
    statuses: list[int] = []
    versions: set[str] = set()
    stop = asyncio.Event()

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        # Every request carries the admin key (it works on the inference endpoints too).
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=ADMIN
        ) as client:

            async def user(n: int) -> None:
                while not stop.is_set():
                    r = await client.post(
                        "/v1/chat/completions",
                        json={
                            "model": "hr",
                            "user": f"user-{n}",
                            "messages": [{"role": "user", "content": "one two three four five"}],
                        },
                    )
                    statuses.append(r.status_code)
                    if r.status_code == 200:
                        versions.add(r.headers["x-loramux-adapter-version"])

            users = [asyncio.create_task(user(n)) for n in range(16)]
            await asyncio.sleep(0.2)
            r = await client.post(
                "/v1/adapters", json={"name": "hr", "path": str(v2)}, headers=ADMIN
            )
            assert r.status_code == 201, r.text
            old = r.json()["adapter"]["main_version"]
            new = r.json()["version"]["id"]
            await asyncio.sleep(0.2)
            r = await client.put(
                "/v1/adapters/hr/traffic", json={"versions": {old: 50, new: 50}}, headers=ADMIN
            )
            assert r.status_code == 200, r.text
            await asyncio.sleep(0.3)
            r = await client.post("/v1/adapters/hr/promote", json={"version": new}, headers=ADMIN)
            assert r.status_code == 200, r.text
            r = await client.post(f"/v1/adapters/hr/versions/{old}/retire", headers=ADMIN)
            assert r.status_code == 200, r.text
            await asyncio.sleep(0.2)
            stop.set()
            await asyncio.gather(*users)

    assert len(statuses) > 100
    assert set(statuses) == {200}, f"failed requests: {[s for s in statuses if s != 200]}"
    assert versions == {old, new}

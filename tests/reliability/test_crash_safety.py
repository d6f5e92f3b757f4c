"""Crash safety of the registry beyond `tests/adapters/test_registry.py` (which kills a process
at each step of a registration): kill -9 during a traffic change, kill -9 of a real server while
it registers an adapter over HTTP, and adapter files damaged on disk after registration."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from safetensors.numpy import save_file

from loramux.adapters.registry import AdapterRegistry
from loramux.adapters.validation import LLAMA_MODULES, BaseModelSpec
from loramux.config import RegistrySettings
from tests.builders import write_lora_folder
from tests.conftest import REPO
from tests.fakes import FaultyEngine
from tests.reliability.harness import ADMIN, app_client, chat, start_server

BASE = BaseModelSpec("SmolLM2-135M-Instruct", LLAMA_MODULES)


async def _open(data: Path) -> AdapterRegistry:
    registry = AdapterRegistry.open(data, BASE, RegistrySettings())
    await registry.start()
    return registry


def _stored_files(data: Path) -> list[str]:
    return sorted(
        str(p.relative_to(data))
        for p in (data / "adapters").rglob("*")
        if p.is_file() and p.name != ".lock"
    )


TRAFFIC_CRASH = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from loramux.adapters.registry import AdapterRegistry
    from loramux.adapters.sqlite_store import SQLiteRegistryStore
    from loramux.adapters.validation import LLAMA_MODULES, BaseModelSpec

    data, v1, v2, when = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    if when == "in-transaction":  # every row written, the commit not yet
        target, original = "_insert_audit", SQLiteRegistryStore._insert_audit
    else:  # the transaction committed, the process dies before it answers
        target, original = "apply", SQLiteRegistryStore.apply

    def crash(*args, **kwargs):
        original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    setattr(SQLiteRegistryStore, target, crash)

    async def main():
        base = BaseModelSpec("SmolLM2-135M-Instruct", LLAMA_MODULES)
        registry = AdapterRegistry.open(data, base)
        await registry.start()
        await registry.set_traffic("hr", {v1: 50, v2: 50}, actor="ops")

    asyncio.run(main())
    """
)


@pytest.mark.parametrize(("when", "survives"), [("in-transaction", "old"), ("after-commit", "new")])
async def test_sigkill_during_a_traffic_change_leaves_one_whole_state(
    tmp_path: Path, when: str, survives: str
) -> None:
    data = tmp_path / "data"
    reg = await _open(data)
    v1 = await reg.register(write_lora_folder(tmp_path / "a", seed=1), name="hr", actor="ops")
    v2 = await reg.register(write_lora_folder(tmp_path / "b", seed=2), name="hr", actor="ops")
    one, two = v1.version.version, v2.version.version
    before, audit_before = reg.get("hr"), len(reg.audit_log())
    await reg.close()

    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    proc = subprocess.run(
        [sys.executable, "-c", TRAFFIC_CRASH, str(data), one, two, when],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()

    reopened = await _open(data)
    adapter, versions = reopened.get("hr")
    if survives == "old":
        assert (adapter, versions) == before
        assert len(reopened.audit_log()) == audit_before
    else:
        assert adapter.traffic == {one: 50, two: 50}
        assert adapter.revision == before[0].revision + 1
        assert len(reopened.audit_log()) == audit_before + 1
        assert {v.status.value for v in versions} == {"active"}
    await reopened.close()


def write_big_lora(folder: Path, *, r: int = 256, layers: int = 30) -> Path:
    """A valid LoRA folder of about 60 MB, so a registration takes long enough to be killed."""
    write_lora_folder(folder, r=r)
    rng = np.random.default_rng(0)
    tensors = {}
    for i in range(layers):
        prefix = f"base_model.model.model.layers.{i}.self_attn"
        for module, out in (("q_proj", 576), ("v_proj", 192)):
            tensors[f"{prefix}.{module}.lora_A.weight"] = rng.standard_normal(
                (r, 576), dtype=np.float32
            )
            tensors[f"{prefix}.{module}.lora_B.weight"] = np.zeros((out, r), dtype=np.float32)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    return folder


SERVE_YAML = "engine: {kind: fake}\nregistry: {limits: {max_rank: 256}}\n"


def test_sigkill_of_the_server_mid_registration_keeps_the_previous_state(
    tmp_path: Path,
) -> None:
    small = write_lora_folder(tmp_path / "hr-v1", seed=1)
    big = write_big_lora(tmp_path / "hr-v2")
    state = tmp_path / "serve"
    state.mkdir()
    server = start_server(state, SERVE_YAML)
    try:
        r = httpx.post(
            f"{server.url}/v1/adapters",
            json={"name": "hr", "path": str(small)},
            headers=ADMIN,
            timeout=30,
        )
        assert r.status_code == 201, r.text
        v1 = r.json()["version"]["id"]
        staging = server.data_dir / "adapters" / ".staging"
        answers: list[object] = []

        def register_big() -> None:
            try:
                answers.append(
                    httpx.post(
                        f"{server.url}/v1/adapters",
                        json={"name": "hr", "path": str(big)},
                        headers=ADMIN,
                        timeout=30,
                    )
                )
            except httpx.HTTPError as exc:
                answers.append(exc)

        sender = threading.Thread(target=register_big)
        sender.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if staging.is_dir() and any(p.is_file() for p in staging.rglob("*")):
                break  # the server is copying the new version's files
            time.sleep(0.001)
        else:
            pytest.fail(f"the registration never reached the staging folder:\n{server.output()}")
        server.proc.kill()
        server.proc.wait(timeout=10)
        sender.join(30)
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
    assert answers
    assert isinstance(answers[0], httpx.HTTPError)  # it never answered
    left = _stored_files(server.data_dir)
    assert any(".staging" in f for f in left)  # the kill did leave a half-written copy

    restarted = start_server(state, SERVE_YAML)
    try:
        shown = httpx.get(f"{restarted.url}/v1/adapters/hr", headers=ADMIN, timeout=10).json()
        assert [v["id"] for v in shown["versions"]] == [v1]
        assert shown["traffic"] == {v1: 100}
        files = _stored_files(restarted.data_dir)
        assert files == [
            f"adapters/hr/{v1}/adapter_config.json",
            f"adapters/hr/{v1}/adapter_model.safetensors",
        ]
        again = httpx.post(
            f"{restarted.url}/v1/adapters",
            json={"name": "hr", "path": str(big)},
            headers=ADMIN,
            timeout=60,
        )
        assert again.status_code == 201, again.text
    finally:
        restarted.proc.kill()
        restarted.proc.wait(timeout=10)


async def test_adapter_files_damaged_on_disk_are_refused_until_registered_again(
    tmp_path: Path,
) -> None:
    folder = write_lora_folder(tmp_path / "hr", seed=1)
    register = {"name": "hr", "path": str(folder)}
    async with app_client(tmp_path, FaultyEngine()) as (_, client):
        version = (await client.post("/v1/adapters", json=register)).json()["version"]["id"]
        assert (await client.post("/v1/chat/completions", json=chat(model="hr"))).is_success
    weights = tmp_path / "data" / "adapters" / "hr" / version / "adapter_model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0x01  # one flipped bit in the last weight
    weights.write_bytes(bytes(raw))

    engine = FaultyEngine()
    async with app_client(tmp_path, engine) as (_, client):
        refused = await client.post("/v1/chat/completions", json=chat(model="hr"))
        assert engine.loaded_adapters() == []
        assert (await client.get("/ready")).status_code == 200  # the rest runs on
        again = await client.post("/v1/adapters", json=register)
        assert again.status_code == 200  # the same version: its files are put back
        assert again.json()["version"]["id"] == version
        served = await client.post("/v1/chat/completions", json=chat(model="hr"))
    assert refused.status_code == 503
    message = refused.json()["error"]["message"]
    assert "changed on disk since it was registered" in message
    assert "register the adapter again" in message
    assert served.status_code == 200
    assert served.json()["choices"][0]["message"]["content"].startswith("[hr]")
    assert engine.loaded_adapters() == [f"hr@{version}"]


async def test_a_config_adapter_with_damaged_files_repairs_itself_at_start(tmp_path: Path) -> None:
    folder = write_lora_folder(tmp_path / "hr", seed=1)
    config = f"adapters: {{hr: {{path: {folder}}}}}\n"
    async with app_client(tmp_path, FaultyEngine(), config) as (_, client):
        version = (await client.get("/v1/adapters/hr")).json()["main_version"]
    weights = tmp_path / "data" / "adapters" / "hr" / version / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4])  # truncated

    async with app_client(tmp_path, FaultyEngine(), config) as (_, client):
        served = await client.post("/v1/chat/completions", json=chat(model="hr"))
    assert served.status_code == 200
    assert served.json()["choices"][0]["message"]["content"].startswith("[hr]")
    assert (tmp_path / "hr" / "adapter_model.safetensors").read_bytes() == weights.read_bytes()

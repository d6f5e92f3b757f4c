"""Placement on vLLM replicas through the whole app: the real app and registry over the remote
engine and two fake vLLM servers; /metrics shows each replica's placements, loads and unloads."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from loramux.config import EngineConfig, RemoteEngineConfig
from loramux.serve.placement import rank
from loramux.serve.remote import RemoteEngine
from tests.api.test_paging_api import chat, register
from tests.reliability.harness import app_client
from tests.serve.fake_vllm_server import FakeVLLM, Served


@pytest.fixture
def replicas() -> Iterator[list[Served]]:
    served = [Served(FakeVLLM(f"r{i}", model="base-model")).start() for i in range(2)]
    yield served
    for s in served:
        s.stop()


def metric(text: str, name: str, url: str) -> float:
    found = re.search(rf'^{name}\{{replica="{re.escape(url)}"\}} (\S+)$', text, re.M)
    assert found, f"{name} for {url} is not in /metrics"
    return float(found.group(1))


async def test_metrics_show_placements_loads_and_unloads_per_replica(
    replicas: list[Served], tmp_path: Path
) -> None:
    urls = [s.url for s in replicas]
    config = EngineConfig(
        remote=RemoteEngineConfig(urls=urls, max_adapters_per_replica=1, probe_interval_s=0.2)
    )
    engine = RemoteEngine(config, model_id="base-model")
    async with app_client(tmp_path, engine) as (_, client):
        versions = {name: await register(client, tmp_path, name, i) for i, name in enumerate("abc")}
        for name in "abc":
            reply = await client.post("/v1/chat/completions", json=chat(name))
            assert reply.status_code == 200, reply.text
        text = (await client.get("/metrics")).text
    keys = [f"{name}@{versions[name]}" for name in "abc"]
    homes = [rank(key, urls)[0] for key in keys]
    for url, served in zip(urls, replicas, strict=True):
        mine = homes.count(url)
        assert metric(text, "loramux_replica_up", url) == 1.0
        assert metric(text, "loramux_replica_placements", url) == min(mine, 1)
        assert metric(text, "loramux_replica_placements", url) == len(served.fake.adapters)
        assert metric(text, "loramux_replica_adapter_loads_total", url) == served.fake.loads
        # A budget of one: every load onto a replica that held a version pushed that one out.
        loads = metric(text, "loramux_replica_adapter_loads_total", url)
        assert loads >= mine
        assert metric(text, "loramux_replica_adapter_unloads_total", url) == loads - min(mine, 1)
        assert metric(text, "loramux_replica_in_flight", url) == 0.0

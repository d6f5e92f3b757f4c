"""No department can hurt another (#19), through the real app: sampling values an engine cannot
honour are refused or normalised at the API, and one department flooding the server leaves
another's requests served."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes import FaultyEngine
from tests.reliability.harness import ADMIN, Server, app_client, chat, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`loramux serve` on loopback over the fake engine, 20 ms a token."""
    state = tmp_path_factory.mktemp("tenancy")
    yaml = "engine: {kind: fake, max_new_tokens: 64, fake: {token_delay_s: 0.02}}\n"
    with running_server(state, yaml) as srv:
        yield srv


def test_an_out_of_range_seed_is_a_400_that_keeps_the_connection(server: Server) -> None:
    with httpx.Client(base_url=server.url, headers=ADMIN, timeout=10) as client:
        bad = client.post("/v1/chat/completions", json=chat(seed=2**64))
        good = client.post("/v1/chat/completions", json=chat(seed=2**63 - 1, max_tokens=2))
        low = client.post("/v1/chat/completions", json=chat(seed=-(2**63), max_tokens=2))
    assert bad.status_code == 400, bad.text
    assert bad.json()["error"]["param"] == "seed"
    assert bad.headers.get("connection") != "close"
    assert (good.status_code, low.status_code) == (200, 200)
    assert "Traceback" not in server.output()


@pytest.mark.parametrize(
    "sampling",
    [{"temperature": 1e-300}, {"top_p": 1e-300}, {"temperature": 1e-39, "top_p": 1e-40}],
    ids=["tiny-temperature", "tiny-top-p", "both"],
)
async def test_tiny_temperature_or_top_p_is_greedy(
    tmp_path: Path, sampling: dict[str, float]
) -> None:
    """Values the hf engine could not sample with (NaN probabilities failed its whole batch
    before #19) reach every engine as greedy decoding: temperature 0, top_p 1."""
    engine = FaultyEngine()
    async with app_client(tmp_path, engine) as (_, client):
        r = await client.post("/v1/chat/completions", json=chat(**sampling))
    assert r.status_code == 200, r.text
    got = engine.requests[-1].sampling
    assert (got.temperature, got.top_p) == (0.0, 1.0)


LIMITS = "limits: {max_in_flight: 4, max_queued: 16, queue_timeout_s: 10}\n"


async def _flood(
    client: httpx.AsyncClient, key: dict[str, str], clients: int, seconds: float
) -> tuple[list[float], int, int]:
    """`clients` closed-loop clients for `seconds`: (latencies of the answered, 503s, answered)."""
    latencies: list[float] = []
    refused = answered = 0
    deadline = time.monotonic() + seconds

    async def one() -> None:
        nonlocal refused, answered
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            r = await client.post(
                "/v1/chat/completions", json=chat("one two three four five six"), headers=key
            )
            if r.status_code == 503:
                refused += 1
                await asyncio.sleep(0.02)
                continue
            assert r.status_code == 200, r.text
            latencies.append(time.perf_counter() - t0)
            answered += 1

    await asyncio.gather(*(one() for _ in range(clients)))
    return latencies, refused, answered


@pytest.mark.parametrize("fair", [True, False], ids=["fair-share", "fifo"])
async def test_a_flooding_department_waits_on_itself(tmp_path: Path, fair: bool) -> None:
    """hr floods with 30 clients; it keeps one client. With fair share it is never refused and
    waits about one generation for a slot; in one FIFO line (the old way) it queues behind hr
    and is refused as often as hr is."""
    engine = FaultyEngine(token_delay_s=0.02)
    extra = LIMITS.replace("}", f", fair_share: {'true' if fair else 'false'}}}")
    async with app_client(tmp_path, engine, extra) as (_, client):
        heavy = await _key(client, "hr")
        light = await _key(client, "it")
        (hr, hr_refused, hr_done), (it, it_refused, _) = await asyncio.gather(
            _flood(client, heavy, 30, 3.0), _flood(client, light, 1, 3.0)
        )
    assert hr_refused > 0  # the server was overloaded
    assert hr_done > 0
    if fair:
        assert it_refused == 0
        assert max(it) < 1.0, it
        assert statistics.median(it) < 0.6 * statistics.median(hr), (it, hr)
    else:  # the test would see the difference: the light department suffers without it
        assert it_refused > 0 or statistics.median(it) >= 0.6 * statistics.median(hr)


async def _key(client: httpx.AsyncClient, department: str) -> dict[str, str]:
    r = await client.post("/v1/keys", json={"department": department})
    assert r.status_code == 201, r.text
    return {"authorization": f"Bearer {r.json()['key']}"}

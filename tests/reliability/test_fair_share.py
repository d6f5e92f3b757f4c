"""No department can hurt another (#19), through the real app: sampling values an engine cannot
honour are refused or normalised at the API, a stream cut short is charged what it generated,
and one department flooding the server leaves another's requests served."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes import FaultyEngine
from tests.reliability.harness import ADMIN, Server, app_client, chat, running_server

WORDS = " ".join(f"w{i}" for i in range(40))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`loramux serve` on loopback over the fake engine, 20 ms a token."""
    state = tmp_path_factory.mktemp("tenancy")
    yaml = "engine: {kind: fake, max_new_tokens: 64, fake: {token_delay_s: 0.02}}\n"
    with running_server(state, yaml) as srv:
        yield srv


def make_key(client: httpx.Client, department: str, **spec: Any) -> dict[str, str]:
    r = client.post("/v1/keys", json={"department": department, **spec}, headers=ADMIN)
    assert r.status_code == 201, r.text
    return {"authorization": f"Bearer {r.json()['key']}"}


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


def test_a_stream_closed_early_is_charged_its_tokens(server: Server) -> None:
    """Before #19 a cancelled stream was charged 0 tokens: closing every stream after a few
    chunks let any number of requests through a tokens-per-minute limit."""
    tpm = 400
    with httpx.Client(base_url=server.url, timeout=10) as client:
        key = make_key(client, "usage", tpm=tpm)
        before = _metric(client.get("/metrics").text, "loramux_completion_tokens_total")
        accepted = 0
        for _ in range(20):
            body = chat(WORDS, stream=True, max_tokens=40)
            with client.stream("POST", "/v1/chat/completions", json=body, headers=key) as r:
                if r.status_code == 429:
                    break
                assert r.status_code == 200, r.read()
                accepted += 1
                lines = r.iter_lines()
                for _ in range(6):  # the role chunk, then 5 words
                    while not next(lines).startswith("data:"):
                        pass
            # closed here, 5 of the 41 words in
        metrics = client.get("/metrics").text
    # Each cut stream costs its 41 prompt words and about 5 generated ones; charged 0 it would
    # let all 20 through. The bucket refills 400/60 tokens a second meanwhile.
    assert 2 <= accepted <= tpm // (41 + 5) + 2, accepted
    completion = _metric(metrics, "loramux_completion_tokens_total") - before
    assert completion >= 5 * accepted, metrics  # the usage metrics count them too


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


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

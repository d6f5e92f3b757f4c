"""No department can hurt another (#19), through the real app: sampling values an engine cannot
honour are refused or normalised at the API."""

from __future__ import annotations

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

"""Fault injection through the real app: the engine dies or hangs mid-stream; the stream ends
with an error event, /ready goes false, the supervisor rebuilds the engine, /ready goes true
again and the next request is answered, with no operator."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.fakes import FaultyEngine
from tests.reliability.harness import app_client, chat
from tests.reliability.test_limits import LONG, sse_events

SUPERVISOR = (
    "supervisor: {probe_interval_s: 0.02, hang_timeout_s: 0.4, backoff_s: 0.05, retry_after_s: 2}\n"
)


async def wait_ready(client: httpx.AsyncClient, timeout: float = 10) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = await client.get("/ready")
        if r.status_code == 200:
            body: dict[str, object] = r.json()
            return body
        await asyncio.sleep(0.02)
    raise AssertionError("the service did not come back")


@pytest.mark.parametrize(
    ("fault", "code"),
    [("crash", "engine_error"), ("hang", "engine_unavailable")],
)
async def test_an_engine_killed_mid_stream_comes_back_without_an_operator(
    tmp_path: Path, fault: str, code: str
) -> None:
    engine = FaultyEngine(token_delay_s=0.01, start_delay_s=0.3)
    async with app_client(tmp_path, engine, SUPERVISOR) as (_, client):
        assert (await client.get("/ready")).status_code == 200
        if fault == "crash":
            engine.crash_after = 3
        else:
            engine.hang_after = 3
        r = await client.post("/v1/chat/completions", json=chat(LONG, stream=True))
        assert r.status_code == 200
        events = sse_events(r.text)
        assert events[-1] == "[DONE]"
        error = events[-2]["error"]
        assert error["code"] == code
        assert "Traceback" not in error["message"]
        text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-2])
        assert text == "[base] w0 w1"  # what came before the fault

        down = await client.get("/ready")
        assert down.status_code == 503
        assert down.json()["supervisor"]["state"] == "recovering"
        refused = await client.post("/v1/chat/completions", json=chat("are you there?"))
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "engine_unavailable"
        assert refused.headers["retry-after"] == "2"

        supervisor = (await wait_ready(client))["supervisor"]
        assert isinstance(supervisor, dict)
        assert supervisor["state"] == "ready"
        assert supervisor["restarts"] == 1
        assert supervisor["last_failure"]
        answer = await client.post("/v1/chat/completions", json=chat("welcome back"))
        assert answer.status_code == 200
        assert answer.json()["choices"][0]["message"]["content"] == "[base] welcome back"
    assert engine.starts == 2

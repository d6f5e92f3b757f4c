"""Limits through the real app: message count and length, the bounded queue (503 +
Retry-After), request timeouts (504, or an error event mid-stream) and client disconnects, each
of which cancels the generation in the engine."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from loramux.gateway.services import AppServices
from tests.fakes import FaultyEngine
from tests.reliability.harness import ADMIN_KEY, BASE, app_client, chat

LONG = " ".join(f"w{i}" for i in range(40))  # the fake engine echoes it, one word per token


def sse_events(text: str) -> list[Any]:
    return [
        json.loads(line[6:]) if line[6:] != "[DONE]" else "[DONE]"
        for line in text.splitlines()
        if line.startswith("data: ")
    ]


LIMIT_CASES = [
    # (what, path, body, param, words)
    (
        "too many messages",
        "/v1/chat/completions",
        {"model": BASE, "messages": [{"role": "user", "content": "hi"}] * 9},
        "messages",
        "9 messages, over this server's limit of 8",
    ),
    (
        "a message too long",
        "/v1/chat/completions",
        chat("x" * 201),
        "messages.0.content",
        "201 characters, over this server's limit of 200",
    ),
    (
        "a long message in a content-parts list",
        "/v1/chat/completions",
        {
            "model": BASE,
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "y" * 300}]},
            ],
        },
        "messages.1.content",
        "limit of 200",
    ),
    (
        "a prompt too long",
        "/v1/completions",
        {"model": BASE, "prompt": "z" * 201},
        "prompt",
        "limit of 200",
    ),
    (
        "too many messages to route",
        "/v1/route",
        {"messages": [{"role": "user", "content": "hi"}] * 9},
        "messages",
        "limit of 8",
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "param", "words"),
    [case[1:] for case in LIMIT_CASES],
    ids=[case[0] for case in LIMIT_CASES],
)
async def test_message_limits_are_400s_that_name_the_field(
    tmp_path: Path, path: str, body: dict[str, Any], param: str, words: str
) -> None:
    engine = FaultyEngine()
    limits = "limits: {max_messages: 8, max_message_chars: 200}\n"
    async with app_client(tmp_path, engine, limits) as (_, client):
        r = await client.post(path, json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert words in error["message"]
    assert engine.finished == []  # nothing reached the engine


async def test_a_full_queue_is_a_fast_503_with_retry_after(tmp_path: Path) -> None:
    engine = FaultyEngine(token_delay_s=0.02)
    limits = "limits: {max_in_flight: 2, max_queued: 2, retry_after_s: 7}\n"
    async with app_client(tmp_path, engine, limits) as (app, client):
        admission = app.state.services.chat.admission
        busy = [asyncio.create_task(client.post("/v1/chat/completions", json=chat(LONG)))]
        busy += [asyncio.create_task(client.post("/v1/chat/completions", json=chat(LONG)))]
        busy += [asyncio.create_task(client.post("/v1/chat/completions", json=chat(LONG)))]
        busy += [asyncio.create_task(client.post("/v1/chat/completions", json=chat(LONG)))]
        while admission.depth < 2:
            await asyncio.sleep(0.005)
        assert admission.in_flight == 2
        ready = (await client.get("/ready")).json()
        assert ready["queue"] == {"in_flight": 2, "waiting": 2}
        refused = await client.post("/v1/chat/completions", json=chat("one more"))
        served = await asyncio.gather(*busy)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "7"
    error = refused.json()["error"]
    assert error["code"] == "server_overloaded"
    assert "retry after 7 s" in error["message"]
    assert [r.status_code for r in served] == [200] * 4
    assert admission.in_flight == 0


async def test_waiting_past_the_queue_timeout_is_a_503(tmp_path: Path) -> None:
    engine = FaultyEngine(token_delay_s=0.05)
    limits = "limits: {max_in_flight: 1, queue_timeout_s: 0.2}\n"
    async with app_client(tmp_path, engine, limits) as (_, client):
        first = asyncio.create_task(client.post("/v1/chat/completions", json=chat(LONG)))
        await asyncio.sleep(0.05)
        second = await client.post("/v1/chat/completions", json=chat("me too"))
        assert (await first).status_code == 200
    assert second.status_code == 503
    assert second.json()["error"]["code"] == "server_overloaded"
    assert "no generation slot came free" in second.json()["error"]["message"]


async def test_a_request_past_its_timeout_is_a_504_and_the_generation_is_cancelled(
    tmp_path: Path,
) -> None:
    engine = FaultyEngine(token_delay_s=0.05)
    limits = "limits: {request_timeout_s: 0.3}\n"
    async with app_client(tmp_path, engine, limits) as (app, client):
        r = await client.post(
            "/v1/chat/completions", json=chat(LONG), headers={"x-request-id": "slow-1"}
        )
        assert app.state.services.chat.admission.in_flight == 0
    assert r.status_code == 504
    error = r.json()["error"]
    assert error["code"] == "request_timeout"
    assert "request timeout of 0.3 s" in error["message"]
    assert engine.cancelled == [r.headers["x-request-id"]]


async def test_a_stream_past_its_timeout_ends_with_an_error_event(tmp_path: Path) -> None:
    engine = FaultyEngine(token_delay_s=0.05)
    limits = "limits: {request_timeout_s: 0.3}\n"
    async with app_client(tmp_path, engine, limits) as (_, client):
        r = await client.post(
            "/v1/chat/completions",
            json=chat(LONG, stream=True),
            headers={"x-request-id": "slow-stream"},
        )
    assert r.status_code == 200
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    assert events[-2]["error"]["code"] == "request_timeout"
    words = [e["choices"][0]["delta"].get("content") for e in events[1:-2]]
    assert words  # some text came before the timeout
    assert all(words)
    assert engine.cancelled == [r.headers["x-request-id"]]


async def test_draining_refuses_new_generations_with_503(tmp_path: Path) -> None:
    async with app_client(tmp_path, FaultyEngine()) as (app, client):
        svc: AppServices = app.state.services
        svc.chat.admission.close()
        r = await client.post("/v1/chat/completions", json=chat())
        ready = await client.get("/ready")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "shutting_down"
    assert r.headers["retry-after"] == "1"
    assert ready.status_code == 503
    assert ready.json()["draining"] is True


# -- client disconnects: driven through raw ASGI, which can say "the client went away" --------


async def _call_and_leave(app: Any, body: dict[str, Any], engine: FaultyEngine) -> list[Any]:
    """POST `body`, then disconnect once the engine is generating; return what was sent."""
    raw = json.dumps(body).encode()
    leave = asyncio.Event()
    sent: list[Any] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await leave.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {ADMIN_KEY}".encode()),
            (b"x-request-id", b"leaver"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("loramux", 80),
        "state": {},
    }
    call = asyncio.create_task(app(scope, receive, send))
    while engine.active_requests == 0:
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)  # a few words in
    leave.set()
    await asyncio.wait_for(call, timeout=0.5)  # at once, not after the 2 s the 40 words take
    return sent


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_a_client_that_leaves_cancels_its_generation(tmp_path: Path, stream: bool) -> None:
    engine = FaultyEngine(token_delay_s=0.05)
    async with app_client(tmp_path, engine) as (app, _):
        await _call_and_leave(app, chat(LONG, stream=stream), engine)
        await asyncio.sleep(0.01)
        [cancelled] = engine.cancelled  # that one request, under the server's id
        assert re.fullmatch(r"[0-9a-f]{24}", cancelled)
        assert engine.finished == []
        assert engine.active_requests == 0
        assert app.state.services.chat.admission.in_flight == 0

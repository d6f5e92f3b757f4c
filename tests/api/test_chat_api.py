"""The OpenAI-compatible API over the fake engine: shapes, adapters, streaming, errors."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from loramux.serve.fake import FakeEngine

BASE = "SmolLM2-135M-Instruct"


def chat(
    model: str = BASE, content: str = "how many vacation days", **extra: Any
) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def sse_events(text: str) -> list[Any]:
    events = []
    for line in text.splitlines():
        if line.startswith("data: "):
            payload = line[len("data: ") :]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


async def test_chat_completion_answers_from_the_named_adapter(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat("hr"))
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "hr"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "[hr] how many vacation days",
        "refusal": None,
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
    assert r.headers["x-loramux-adapter"] == "hr"
    assert len(r.headers["x-loramux-adapter-version"]) == 12


async def test_base_model_id_uses_no_adapter(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat(BASE))
    assert r.json()["choices"][0]["message"]["content"].startswith("[base]")
    assert r.headers["x-loramux-adapter"] == "base"


async def test_pinned_version_resolves_and_wrong_version_is_404(client: httpx.AsyncClient) -> None:
    models = (await client.get("/v1/models")).json()["data"]
    version = next(m["version"] for m in models if m["id"] == "it")
    ok = await client.post("/v1/chat/completions", json=chat(f"it@{version}"))
    assert ok.json()["choices"][0]["message"]["content"].startswith("[it]")
    bad = await client.post("/v1/chat/completions", json=chat("it@000000000000"))
    assert bad.status_code == 404
    assert bad.json()["error"]["code"] == "model_not_found"


async def test_models_lists_base_and_adapters_with_parent(client: httpx.AsyncClient) -> None:
    body = (await client.get("/v1/models")).json()
    by_id = {m["id"]: m for m in body["data"]}
    assert set(by_id) == {BASE, "auto", "hr", "it"}
    assert by_id[BASE]["parent"] is None
    assert by_id["hr"]["parent"] == BASE
    assert by_id["hr"]["description"] == "HR policy"


async def test_stream_sends_role_deltas_finish_usage_and_done(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/chat/completions",
        json=chat("it", "reset my password", stream=True, stream_options={"include_usage": True}),
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(
        e["choices"][0]["delta"].get("content", "") for e in events[1:-2] if e["choices"]
    )
    assert text == "[it] reset my password"
    finish = [e for e in events[:-1] if e["choices"] and e["choices"][0]["finish_reason"]]
    assert finish[0]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["usage"]["completion_tokens"] == 4  # "[it]" + three words


async def test_max_tokens_cuts_with_finish_reason_length(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat(content="a b c d e", max_tokens=2))
    choice = r.json()["choices"][0]
    assert choice["message"]["content"] == "[base] a"
    assert choice["finish_reason"] == "length"


async def test_stop_sequence_ends_the_answer_before_it(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/chat/completions", json=chat(content="one two three", stop=["three"])
    )
    assert r.json()["choices"][0]["message"]["content"] == "[base] one two "


async def test_completions_endpoint(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/completions", json={"model": "hr", "prompt": "hello world"})
    body = r.json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == "[hr] hello world"
    r = await client.post("/v1/completions", json={"model": "hr", "prompt": "x y", "stream": True})
    events = sse_events(r.text)
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == "[hr] x y"


async def test_fields_outside_the_openai_api_are_refused_naming_them(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post("/v1/chat/completions", json=chat(logit_bias={}, frobnicate=3))
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "frobnicate"
    assert "unrecognized request argument supplied: frobnicate" in r.json()["error"]["message"]
    nested = await client.post(
        "/v1/chat/completions",
        json={"model": BASE, "messages": [{"role": "user", "content": "x", "colour": "red"}]},
    )
    assert nested.json()["error"]["param"] == "messages.0.colour"
    # OpenAI fields at the value that changes nothing are accepted (and answered as usual)
    ok = await client.post(
        "/v1/chat/completions",
        json=chat(logit_bias={}, frequency_penalty=0, store=False, n=1, service_tier="auto"),
    )
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("frequency_penalty", 0.5),
        ("presence_penalty", -1),
        ("logit_bias", {"42": 5}),
        ("store", True),
        ("modalities", ["text", "audio"]),
        ("reasoning_effort", "high"),
        ("functions", [{"name": "f"}]),
    ],
)
async def test_openai_fields_loramux_cannot_honour_are_refused_naming_them(
    client: httpx.AsyncClient, field: str, value: Any
) -> None:
    r = await client.post("/v1/chat/completions", json=chat(**{field: value}))
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == field
    assert "not supported" in error["message"]


async def test_the_request_id_is_the_servers_and_the_clients_is_echoed_beside_it(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post("/v1/chat/completions", json=chat(), headers={"x-request-id": "abc-123"})
    server_id = r.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{24}", server_id)
    assert r.json()["id"] == f"chatcmpl-{server_id}"
    assert r.headers["x-client-request-id"] == "abc-123"
    again = await client.post(
        "/v1/chat/completions", json=chat(), headers={"x-request-id": "abc-123"}
    )
    assert again.headers["x-request-id"] != server_id  # a new id for every request
    r = await client.post("/v1/chat/completions", json=chat(), headers={"x-request-id": "bad id!"})
    assert r.headers["x-request-id"] != "bad id!"
    assert "x-client-request-id" not in r.headers  # not well formed: not echoed


async def test_health_and_ready(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["adapters_loaded"] == 2
    await fake_engine.stop()
    assert (await client.get("/ready")).status_code == 503
    r = await client.post("/v1/chat/completions", json=chat())
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "engine_unavailable"


BAD_REQUESTS = [
    # (what, body or raw bytes, status, param, words the message must contain)
    ("unknown model", chat("finance"), 404, "model", "does not exist"),
    ("empty messages", {"model": BASE, "messages": []}, 400, "messages", "at least 1"),
    ("missing messages", {"model": BASE}, 400, "messages", "missing"),
    ("missing model", {"messages": [{"role": "user", "content": "x"}]}, 400, "model", "missing"),
    (
        "tool result answering no call",
        {"model": BASE, "messages": [{"role": "tool", "content": "x", "tool_call_id": "c1"}]},
        400,
        "messages.0.tool_call_id",
        "no earlier assistant",
    ),
    (
        "no user turn",
        {"model": BASE, "messages": [{"role": "system", "content": "be brief"}]},
        400,
        "messages",
        "user message",
    ),
    ("max_tokens over limit", chat(max_tokens=33), 400, "max_tokens", "limit of 32"),
    ("max_tokens zero", chat(max_tokens=0), 400, "max_tokens", "greater than"),
    ("n=17", chat(n=17), 400, "n", "less than or equal"),
    ("temperature 5", chat(temperature=5), 400, "temperature", "less than"),
    ("messages wrong type", {"model": BASE, "messages": "hi"}, 400, "messages", "list"),
    ("too many stops", chat(stop=["a", "b", "c", "d", "e"]), 400, "stop", "at most 4"),
    ("prompt too long", chat(content="word " * 70), 400, "messages", "context length"),
    (
        "prompt + max_tokens too long",
        chat(content="w " * 40, max_tokens=30),
        400,
        "max_tokens",
        "context",
    ),
    ("not json", b"{not json", 400, None, "not valid JSON"),
    ("json array", b"[1, 2]", 400, None, "valid dictionary"),
]


@pytest.mark.parametrize(
    ("body", "status", "param", "words"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
async def test_bad_requests_get_a_clear_openai_error(
    client: httpx.AsyncClient, body: Any, status: int, param: str | None, words: str
) -> None:
    if isinstance(body, bytes):
        r = await client.post(
            "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
        )
    else:
        r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == status
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert words in error["message"]


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat(content="x" * 5000))
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"


async def test_unknown_path_is_404_envelope(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/nothing")
    assert r.status_code == 404
    assert r.json()["error"]["message"] == "no such endpoint: GET /v1/nothing"

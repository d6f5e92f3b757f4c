"""The OpenAI surface at the gateway, engine aside: n choices, lists of prompts, tool calls
made of a reply, tools rendered into the prompt, tools and schemas checked (400 with the param).

Structured output and logprobs themselves are the engines' (tests/serve); the real clients
against a running server are in tests/e2e/test_openai_clients.py.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.fakes import ScriptedEngine

BASE = "SmolLM2-135M-Instruct"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CALL_TEXT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@pytest.fixture
def fake_engine() -> ScriptedEngine:
    return ScriptedEngine()


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": BASE, "messages": [{"role": "user", "content": "weather in Paris?"}], **extra}


def sse(text: str) -> list[dict[str, Any]]:
    return [
        json.loads(line[6:])
        for line in text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


async def test_n_choices_each_generated_and_counted(
    client: httpx.AsyncClient, fake_engine: ScriptedEngine
) -> None:
    r = await client.post("/v1/chat/completions", json=chat(n=3, seed=5))
    assert r.status_code == 200, r.text
    body = r.json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert {c["message"]["content"] for c in body["choices"]} == {"hello there"}
    assert len(fake_engine.requests) == 3
    assert [q.sampling.seed for q in fake_engine.requests] == [5, 6, 7]
    assert len({q.request_id for q in fake_engine.requests}) == 3
    per_choice = len(range(0, len("hello there"), 3))
    assert body["usage"] == {
        "prompt_tokens": 7,
        "completion_tokens": 3 * per_choice,
        "total_tokens": 7 + 3 * per_choice,
    }


async def test_n_choices_stream_interleaved_with_their_index(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/chat/completions",
        json=chat(n=2, stream=True, stream_options={"include_usage": True}),
    )
    events = sse(r.text)
    texts = {0: "", 1: ""}
    finishes = {}
    for event in events:
        for choice in event["choices"]:
            texts[choice["index"]] += choice["delta"].get("content") or ""
            if choice["finish_reason"]:
                finishes[choice["index"]] = choice["finish_reason"]
    assert texts == {0: "hello there", 1: "hello there"}
    assert finishes == {0: "stop", 1: "stop"}
    assert events[-1]["choices"] == []
    assert events[-1]["usage"]["completion_tokens"] == 8


async def test_a_list_of_prompts_gives_a_choice_per_prompt_and_n(
    client: httpx.AsyncClient, fake_engine: ScriptedEngine
) -> None:
    r = await client.post(
        "/v1/completions", json={"model": BASE, "prompt": ["one", "two"], "n": 2, "echo": True}
    )
    assert r.status_code == 200, r.text
    choices = r.json()["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2, 3]
    assert [c["text"] for c in choices] == [f"{p}hello there" for p in ("one", "one", "two", "two")]
    assert sorted(q.prompt for q in fake_engine.requests) == ["one", "one", "two", "two"]
    assert r.json()["usage"]["prompt_tokens"] == 14  # each prompt counted once


async def test_an_auto_tool_call_becomes_tool_calls(
    client: httpx.AsyncClient, fake_engine: ScriptedEngine
) -> None:
    fake_engine.reply = CALL_TEXT
    r = await client.post("/v1/chat/completions", json=chat(tools=[WEATHER]))
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    # the engine saw the tools in the system message, in the model's tool format
    system = fake_engine.requests[0].messages[0]
    assert system.role == "system"
    assert '"name": "get_weather"' in system.content
    assert "<tools>" in system.content


async def test_a_streamed_tool_call_arrives_as_tool_call_deltas(
    client: httpx.AsyncClient, fake_engine: ScriptedEngine
) -> None:
    fake_engine.reply = "Let me look. " + CALL_TEXT
    r = await client.post("/v1/chat/completions", json=chat(tools=[WEATHER], stream=True))
    content, name, arguments, finish = "", "", "", None
    for event in sse(r.text):
        for choice in event["choices"]:
            delta = choice["delta"]
            content += delta.get("content") or ""
            for call in delta.get("tool_calls") or ():
                name += call.get("function", {}).get("name") or ""
                arguments += call.get("function", {}).get("arguments") or ""
            finish = choice["finish_reason"] or finish
    assert "<tool_call>" not in content
    assert content.strip() == "Let me look."
    assert name == "get_weather"
    assert json.loads(arguments) == {"city": "Paris"}
    assert finish == "tool_calls"


@pytest.mark.parametrize(
    "reply",
    [
        '<tool_call>{"name": "nope", "arguments": {}}</tool_call>',
        "<tool_call>{not json</tool_call>",
        "I would rather not use a tool. <tool_",
    ],
)
async def test_a_reply_without_a_valid_call_stays_text(
    client: httpx.AsyncClient, fake_engine: ScriptedEngine, reply: str
) -> None:
    fake_engine.reply = reply
    r = await client.post("/v1/chat/completions", json=chat(tools=[WEATHER]))
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert "tool_calls" not in choice["message"]
    assert choice["message"]["content"] == reply
    streamed = await client.post("/v1/chat/completions", json=chat(tools=[WEATHER], stream=True))
    text = "".join(
        c["delta"].get("content") or "" for e in sse(streamed.text) for c in e["choices"]
    )
    assert text == reply


async def test_tool_history_is_rendered_for_the_model(
    client: httpx.AsyncClient, fake_engine: ScriptedEngine
) -> None:
    messages = [
        {"role": "user", "content": "weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
    ]
    r = await client.post(
        "/v1/chat/completions", json={"model": BASE, "messages": messages, "tools": [WEATHER]}
    )
    assert r.status_code == 200, r.text
    sent = fake_engine.requests[0].messages
    assert [m.role for m in sent] == ["system", "user", "assistant", "user"]
    assert '"arguments": {"city": "Paris"}' in sent[2].content
    assert sent[3].content == "<tool_response>\nsunny, 21 C\n</tool_response>"


async def test_a_forced_tool_choice_decodes_under_the_functions_schema(
    client: httpx.AsyncClient, fake_engine: ScriptedEngine
) -> None:
    fake_engine.reply = '{"city": "Paris"}'
    r = await client.post(
        "/v1/chat/completions",
        json=chat(
            tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}}
        ),
    )
    choice = r.json()["choices"][0]
    structured = fake_engine.requests[0].sampling.structured
    assert structured is not None
    assert json.loads(structured.json_schema or "") == WEATHER["function"]["parameters"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    required = await client.post(
        "/v1/chat/completions",
        json=chat(
            tools=[WEATHER, {"type": "function", "function": {"name": "now"}}],
            tool_choice="required",
        ),
    )
    schema = json.loads(fake_engine.requests[1].sampling.structured.json_schema)
    assert {s["properties"]["name"]["const"] for s in schema["anyOf"]} == {"get_weather", "now"}
    # the scripted reply names no function: a forced reply that is no call is plain text
    assert required.json()["choices"][0]["message"]["content"] == '{"city": "Paris"}'


async def test_response_format_reaches_the_engine_as_a_schema(
    client: httpx.AsyncClient, fake_engine: ScriptedEngine
) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    fmt = {
        "type": "json_schema",
        "json_schema": {
            "name": "thing",
            "description": "how many things",
            "schema": schema,
            "strict": True,
        },
    }
    await client.post("/v1/chat/completions", json=chat(response_format=fmt))
    await client.post("/v1/chat/completions", json=chat(response_format={"type": "json_object"}))
    # the format's name and description are told to the model, as OpenAI's are
    system = fake_engine.requests[0].messages[0]
    assert system.role == "system"
    assert system.content == "Respond with JSON for `thing`: how many things"
    assert fake_engine.requests[1].messages[0].role == "user"  # json_object: nothing added
    first, second = (q.sampling.structured for q in fake_engine.requests)
    assert first is not None
    assert json.loads(first.json_schema or "") == schema
    assert second is not None
    assert second.json_schema is None


NAMELESS = {"type": "function", "function": {"description": "no name"}}
BAD_SCHEMA = {
    "type": "function",
    "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": 5}}}},
}
BAD = [
    ("tool with no name", chat(tools=[NAMELESS]), "tools.0.function.name"),
    (
        "tool name with spaces",
        chat(tools=[{"type": "function", "function": {"name": "get weather"}}]),
        "tools.0.function.name",
    ),
    ("duplicate tool names", chat(tools=[WEATHER, WEATHER]), "tools.1.function.name"),
    ("parameters not a JSON Schema", chat(tools=[BAD_SCHEMA]), "tools.0.function.parameters"),
    (
        "tool_choice naming no tool",
        chat(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "x"}}),
        "tool_choice",
    ),
    ("tool_choice required without tools", chat(tool_choice="required"), "tool_choice"),
    ("tool_choice unknown word", chat(tools=[WEATHER], tool_choice="always"), "tool_choice"),
    (
        "response_format schema not a JSON Schema",
        chat(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "nonsense"}},
            }
        ),
        "response_format.json_schema.schema",
    ),
    (
        "json_schema without json_schema",
        chat(response_format={"type": "json_schema"}),
        "response_format.json_schema",
    ),
    (
        "json response_format with tools on auto",
        chat(tools=[WEATHER], response_format={"type": "json_object"}),
        "response_format",
    ),
    ("top_logprobs without logprobs", chat(top_logprobs=2), "top_logprobs"),
    (
        "stream_options without stream",
        chat(stream_options={"include_usage": True}),
        "stream_options",
    ),
    (
        "participant name",
        {"model": BASE, "messages": [{"role": "user", "content": "x", "name": "bob"}]},
        "messages.0.name",
    ),
    (
        "image content",
        {
            "model": BASE,
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
            ],
        },
        "messages.0.content.0",
    ),
]


@pytest.mark.parametrize(("body", "param"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
async def test_bad_tools_and_formats_are_a_400_naming_the_param(
    client: httpx.AsyncClient, fake_engine: ScriptedEngine, body: dict[str, Any], param: str
) -> None:
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param, r.json()
    assert fake_engine.requests == []  # refused before the engine


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": BASE, "prompt": "x", "suffix": "y"}, "suffix"),
        ({"model": BASE, "prompt": "x", "best_of": 3}, "best_of"),
        ({"model": BASE, "prompt": "x", "echo": True, "logprobs": 1}, "echo"),
        ({"model": BASE, "prompt": [1, 2, 3]}, "prompt"),
        ({"model": BASE, "prompt": "x", "unknown": 1}, "unknown"),
    ],
)
async def test_bad_completions_are_a_400_naming_the_param(
    client: httpx.AsyncClient, fake_engine: ScriptedEngine, body: dict[str, Any], param: str
) -> None:
    r = await client.post("/v1/completions", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param, r.json()
    assert fake_engine.requests == []

"""Real clients against a running `loramux serve` (the shipped default config: SmolLM2 on the
hf engine, the demo adapters, the router): the official `openai` client (structured output with
`parse`, tool calls round trip, streamed tool calls, n, logprobs, embeddings, lists of prompts),
LangChain's `ChatOpenAI` (`bind_tools`, `with_structured_output`) and the OpenAI Agents SDK with
a function tool. Constrained decoding is what makes the 135M model's JSON always parse.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import httpx
import numpy as np
import openai
import pytest
from pydantic import BaseModel

from tests.conftest import REPO
from tests.serve_process import serving

pytestmark = pytest.mark.slow

BASE = "SmolLM2-135M-Instruct"
IT_Q = "Which VPN do we use?"  # a phrasing the demo `it` adapter was trained on
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo", "Rome"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


class Ticket(BaseModel):
    department: Literal["hr", "it", "finance"]
    urgent: bool
    priority: Literal[1, 2, 3]


@pytest.fixture(scope="module")
def server(base_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("clients")
    env = {**os.environ, "LORAMUX_DATA_DIR": str(state / "data"), "HF_HUB_OFFLINE": "1"}
    log = state / "serve.log"
    args = ["serve", "--config", "configs/default.yaml"]
    with serving(args, env=env, log=log, cwd=REPO, timeout=240) as url:
        yield url


@pytest.fixture
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)


def test_parse_gives_a_valid_pydantic_object(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(
        model=BASE,
        messages=[{"role": "user", "content": "File a ticket: my laptop will not start."}],
        response_format=Ticket,
        max_completion_tokens=64,
        temperature=0,
    )
    ticket = completion.choices[0].message.parsed
    assert isinstance(ticket, Ticket)


def test_a_tool_call_round_trips(client: openai.OpenAI) -> None:
    messages: list[dict[str, object]] = [
        {"role": "user", "content": "What is the weather in Oslo?"}
    ]
    first = client.chat.completions.create(
        model=BASE,
        messages=messages,  # type: ignore[arg-type]
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=32,
        temperature=0,
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    args = json.loads(call.function.arguments)  # type: ignore[union-attr]
    assert args["city"] in {"Paris", "Oslo", "Rome"}
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "Snow, -3 C"})
    answer = client.chat.completions.create(
        model=BASE,
        messages=messages,  # type: ignore[arg-type]
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        max_tokens=24,
        temperature=0,
    )
    assert answer.choices[0].finish_reason in ("stop", "length", "tool_calls")
    assert answer.choices[0].message.content or answer.choices[0].message.tool_calls


def test_streamed_tool_calls_reassemble(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model=BASE,
        messages=[{"role": "user", "content": "Weather in Rome, please."}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="required",
        max_tokens=32,
        temperature=0,
    ) as stream:
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments)["city"] in {"Paris", "Oslo", "Rome"}  # type: ignore[union-attr]
    assert final.choices[0].finish_reason == "tool_calls"


def test_auto_routes_on_the_conversation_with_tools(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": IT_Q}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        max_tokens=8,
        temperature=0,
    )
    assert raw.headers["x-loramux-route"] == "it"
    assert raw.headers["x-loramux-adapter"] == "it"
    # after a tool result the user's turn is still what is routed (not the tool's output)
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": "{}"},
    }
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[  # type: ignore[list-item]
            {"role": "user", "content": IT_Q},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Paris: sunny, 21 C"},
        ],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        max_tokens=8,
        temperature=0,
    )
    assert raw.headers["x-loramux-route"] == "it"


def test_n_and_logprobs(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=BASE,
        messages=[{"role": "user", "content": "Say hello."}],
        n=2,
        logprobs=True,
        top_logprobs=2,
        max_tokens=6,
        temperature=0,
    )
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].message.content == r.choices[1].message.content  # greedy: the same
    content = r.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for token in content:
        assert token.logprob <= 0
        assert len(token.top_logprobs) == 2
        assert token.top_logprobs[0].logprob >= token.top_logprobs[1].logprob
        assert math.isclose(token.logprob, token.top_logprobs[0].logprob, abs_tol=1e-4)


def test_embeddings_from_the_loaded_embedder(client: openai.OpenAI, server: str) -> None:
    assert "all-MiniLM-L6-v2" in {m.id for m in client.models.list().data}
    r = client.embeddings.create(model="all-MiniLM-L6-v2", input=["annual leave", "vpn setup"])
    assert [d.index for d in r.data] == [0, 1]
    vectors = np.array([d.embedding for d in r.data])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    assert r.usage.prompt_tokens > 4
    floats = httpx.post(
        f"{server}/v1/embeddings",
        json={"model": "all-MiniLM-L6-v2", "input": "annual leave", "encoding_format": "float"},
    ).json()["data"][0]["embedding"]
    packed = httpx.post(
        f"{server}/v1/embeddings",
        json={"model": "all-MiniLM-L6-v2", "input": "annual leave", "encoding_format": "base64"},
    ).json()["data"][0]["embedding"]
    assert np.allclose(np.frombuffer(base64.b64decode(packed), "<f4"), floats)
    assert np.allclose(floats, vectors[0], atol=1e-5)


def test_completions_with_a_list_of_prompts(client: openai.OpenAI) -> None:
    r = client.completions.create(
        model=BASE, prompt=["The capital of France is", "One, two,"], max_tokens=4, temperature=0
    )
    assert [c.index for c in r.choices] == [0, 1]
    single = client.completions.create(model=BASE, prompt="One, two,", max_tokens=4, temperature=0)
    assert r.choices[1].text == single.choices[0].text


def test_langchain_bind_tools_and_structured_output(server: str) -> None:
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: Literal["Paris", "Oslo", "Rome"]) -> str:
        """Current weather in a city."""
        return "sunny"

    llm = ChatOpenAI(
        model=BASE, base_url=f"{server}/v1", api_key="unused", temperature=0, max_tokens=48
    )
    message = llm.bind_tools([get_weather], tool_choice="get_weather").invoke(
        "What is the weather in Paris?"
    )
    (call,) = message.tool_calls
    assert call["name"] == "get_weather"
    assert call["args"]["city"] in {"Paris", "Oslo", "Rome"}
    ticket = llm.with_structured_output(Ticket).invoke("File a ticket: my payslip is wrong.")
    assert isinstance(ticket, Ticket)


def test_openai_agents_sdk_runs_a_function_tool(server: str) -> None:
    from agents import (
        Agent,
        ModelSettings,
        OpenAIChatCompletionsModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )

    set_tracing_disabled(True)  # no traces sent to OpenAI
    calls: list[str] = []

    @function_tool
    def get_weather(city: Literal["Paris", "Oslo", "Rome"]) -> str:
        """Current weather in a city."""
        calls.append(city)
        return f"It is sunny in {city}."

    model = OpenAIChatCompletionsModel(
        model=BASE,
        openai_client=openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0),
    )
    agent = Agent(
        name="weather",
        instructions="Answer weather questions with the get_weather tool.",
        tools=[get_weather],
        model=model,
        model_settings=ModelSettings(tool_choice="required", temperature=0, max_tokens=48),
    )
    result = Runner.run_sync(agent, "What is the weather in Rome?", max_turns=4)
    assert calls  # the tool ran with the arguments the model gave it
    assert calls[0] in {"Paris", "Oslo", "Rome"}
    assert isinstance(result.final_output, str)
    assert result.final_output


def test_a_stop_string_across_stream_chunks_is_cut(client: openai.OpenAI) -> None:
    ask = {
        "model": BASE,
        "messages": [{"role": "user", "content": "Count from one to ten in words."}],
        "max_tokens": 24,
        "temperature": 0,
    }
    full = client.chat.completions.create(**ask).choices[0].message.content or ""  # type: ignore[call-overload]
    assert len(full) > 16
    stop = full[6:14]  # some characters from the middle, likely spanning tokens
    cut = full[: full.index(stop)]
    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(**ask, stream=True, stop=[stop])  # type: ignore[call-overload]
        if chunk.choices
    ]
    assert "".join(pieces) == cut
    assert len([p for p in pieces if p]) >= 1

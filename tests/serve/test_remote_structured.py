"""The remote engine passes structured output and logprobs to vLLM's OpenAI server and reads the
logprobs back (against the hand-written fake vLLM server on loopback)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import pytest

from loramux.config import EngineConfig, RemoteEngineConfig
from loramux.errors import InvalidRequestError
from loramux.serve.engine import generate
from loramux.serve.remote import RemoteEngine
from loramux.serve.types import GenerationRequest, SamplingParams, StructuredOutput
from loramux.types import ChatMessage
from tests.serve.fake_vllm_server import FakeVLLM, Served

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


@pytest.fixture
def replica() -> Iterator[Served]:
    served = Served(FakeVLLM("r0")).start()
    yield served
    served.stop()


@pytest.fixture
async def engine(replica: Served) -> AsyncIterator[RemoteEngine]:
    config = EngineConfig(remote=RemoteEngineConfig(urls=[replica.url]))
    eng = RemoteEngine(config, model_id="base-model", probe_interval_s=0.1)
    await eng.start()
    yield eng
    await eng.stop()


def request(chat: bool, **sampling: object) -> GenerationRequest:
    params = SamplingParams(max_tokens=8, temperature=0.0, **sampling)  # type: ignore[arg-type]
    if chat:
        return GenerationRequest("t", params, (ChatMessage("user", "one two three"),))
    return GenerationRequest("t", params, prompt="one two three")


@pytest.mark.parametrize("chat", [True, False])
@pytest.mark.parametrize(
    ("structured", "wanted"),
    [
        (
            StructuredOutput(json.dumps(SCHEMA)),
            {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": SCHEMA, "strict": True},
            },
        ),
        (StructuredOutput(), {"type": "json_object"}),
    ],
)
async def test_structured_output_is_sent_as_response_format(
    engine: RemoteEngine,
    replica: Served,
    chat: bool,
    structured: StructuredOutput,
    wanted: dict[str, object],
) -> None:
    await generate(engine, request(chat, structured=structured))
    assert replica.fake.bodies[-1]["response_format"] == wanted


async def test_no_structured_output_sends_no_response_format(
    engine: RemoteEngine, replica: Served
) -> None:
    await generate(engine, request(True))
    assert "response_format" not in replica.fake.bodies[-1]
    assert "logprobs" not in replica.fake.bodies[-1]


async def test_a_schema_that_is_not_json_is_refused_on_response_format(
    engine: RemoteEngine,
) -> None:
    with pytest.raises(InvalidRequestError) as err:
        await generate(engine, request(True, structured=StructuredOutput("{not json")))
    assert err.value.param == "response_format"


@pytest.mark.parametrize("chat", [True, False])
@pytest.mark.parametrize("k", [0, 2])
async def test_logprobs_are_asked_and_read_back(
    engine: RemoteEngine, replica: Served, chat: bool, k: int
) -> None:
    result = await generate(engine, request(chat, logprobs=k))
    body = replica.fake.bodies[-1]
    if chat:
        assert (body["logprobs"], body["top_logprobs"]) == (True, k)
    else:
        assert body["logprobs"] == k
    assert result.logprobs is not None
    assert len(result.logprobs) == result.completion_tokens
    assert "".join(t.token for t in result.logprobs) == result.text
    for entry in result.logprobs:
        assert entry.logprob == -1.0
        assert len(entry.top) == k
        if k:
            assert entry.top[0] == (entry.token, -1.0)
            assert entry.top[1] == ("alt0", -2.0)

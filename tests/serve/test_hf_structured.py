"""Structured output and logprobs on the hf engine, with the real SmolLM2 and demo adapters.

Constrained decoding must make even the 135M model's output parse and validate against the
schema, in a batch that mixes adapters and constrained and free rows; a bad schema fails only its
own request, before it enters the batch.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from loramux.config import EngineConfig, HFEngineConfig
from loramux.errors import EngineError, InvalidRequestError
from loramux.serve.engine import generate
from loramux.serve.hf import HFEngine
from loramux.serve.types import (
    FinishReason,
    GenerationRequest,
    SamplingParams,
    StructuredOutput,
)
from loramux.types import ChatMessage
from tests.fakes import PoisonedSampler
from tests.serve.conftest import ref

pytestmark = pytest.mark.slow

SCHEMAS: dict[str, dict[str, Any]] = {
    "nested": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 24},
            "address": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 24}},
                "required": ["city"],
            },
        },
        "required": ["name", "address"],
    },
    "enum": {
        "type": "object",
        "properties": {"answer": {"enum": ["yes", "no", "maybe"]}},
        "required": ["answer"],
    },
    "array": {
        "type": "object",
        "properties": {
            "colours": {
                "type": "array",
                "items": {"type": "string", "maxLength": 12},
                "minItems": 1,
                "maxItems": 3,
            }
        },
        "required": ["colours"],
    },
    "required": {
        "type": "object",
        "properties": {
            "title": {"type": "string", "maxLength": 30},
            "year": {"type": "integer", "minimum": 1900, "maximum": 2100},
            "good": {"type": "boolean"},
        },
        "required": ["title", "year", "good"],
    },
}
PROMPTS = {
    "nested": "Give me a person and where they live, as JSON.",
    "enum": "Is the sky blue? Answer in JSON.",
    "array": "List some colours as JSON.",
    "required": "Describe a film as JSON.",
}


def structured(schema: dict[str, Any] | None) -> StructuredOutput:
    return StructuredOutput(None if schema is None else json.dumps(schema))


def request(
    prompt: str,
    *,
    schema: dict[str, Any] | None | str = "free",
    adapter: str | None = None,
    max_tokens: int = 60,
    logprobs: int | None = None,
    request_id: str = "t",
) -> GenerationRequest:
    params = SamplingParams(
        max_tokens=max_tokens,
        temperature=0.0,
        structured=None if schema == "free" else structured(schema),  # type: ignore[arg-type]
        logprobs=logprobs,
    )
    return GenerationRequest(
        request_id=request_id,
        sampling=params,
        messages=(ChatMessage("user", prompt),),
        adapter=ref(adapter) if adapter else None,
    )


@pytest.fixture(scope="module")
def engine(base_model_dir: Path) -> Iterator[HFEngine]:
    eng = HFEngine(
        base_model_dir, EngineConfig(max_batch_size=8, hf=HFEngineConfig(max_wait_ms=50))
    )
    asyncio.run(eng.start())
    for name in ("hr", "it"):
        asyncio.run(eng.add_adapter(ref(name)))
    yield eng
    asyncio.run(eng.stop())


@pytest.mark.parametrize("name", list(SCHEMAS))
async def test_json_schema_output_parses_and_validates(engine: HFEngine, name: str) -> None:
    result = await generate(engine, request(PROMPTS[name], schema=SCHEMAS[name], max_tokens=80))
    assert result.finish_reason == FinishReason.STOP, result.text
    jsonschema.validate(json.loads(result.text), SCHEMAS[name])


async def test_json_object_output_is_one_json_object(engine: HFEngine) -> None:
    result = await generate(
        engine, request("Reply with a JSON object with a key ok.", schema=None, max_tokens=60)
    )
    if result.finish_reason == FinishReason.STOP:
        assert isinstance(json.loads(result.text), dict)
    else:  # cut by max_tokens: still a prefix of an object
        assert result.text.startswith("{")


async def test_mixed_batch_of_adapters_and_grammars_matches_each_alone(engine: HFEngine) -> None:
    """bs 8: base, hr and it rows; four schemas, json_object and free text, all at once."""
    reqs = [
        request(PROMPTS["nested"], schema=SCHEMAS["nested"], adapter="hr"),
        request(PROMPTS["enum"], schema=SCHEMAS["enum"], adapter="it"),
        request(PROMPTS["array"], schema=SCHEMAS["array"]),
        request(PROMPTS["required"], schema=SCHEMAS["required"], adapter="hr"),
        request("Which VPN do we use?", adapter="it", max_tokens=12),
        request("Where can I update my home address?", adapter="hr", max_tokens=12),
        request("Reply with a JSON object.", schema=None, max_tokens=30),
        request("What is the capital of France?", max_tokens=12),
    ]
    alone = [(await generate(engine, r)).text for r in reqs]
    together = await asyncio.gather(*(generate(engine, r) for r in reqs))
    assert [r.text for r in together] == alone
    for r, name in zip(together[:4], ["nested", "enum", "array", "required"], strict=True):
        jsonschema.validate(json.loads(r.text), SCHEMAS[name])
    assert not alone[4].startswith("{")  # the free rows are not constrained by a neighbour


async def test_max_tokens_before_the_json_is_complete_finishes_with_length(
    engine: HFEngine,
) -> None:
    result = await generate(
        engine, request(PROMPTS["nested"], schema=SCHEMAS["nested"], max_tokens=4)
    )
    assert result.finish_reason == FinishReason.LENGTH
    assert result.completion_tokens == 4
    assert result.text.startswith("{")


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "nope"},
        {"type": "object", "properties": 3},
    ],
)
async def test_a_bad_schema_is_an_invalid_request_on_response_format(
    engine: HFEngine, schema: dict[str, Any]
) -> None:
    neighbour = asyncio.create_task(generate(engine, request("Which VPN do we use?", adapter="it")))
    with pytest.raises(InvalidRequestError) as err:
        await generate(engine, request("Hi", schema=schema))
    assert err.value.param == "response_format"
    assert err.value.status == 400
    assert "schema" in err.value.message
    assert (await neighbour).text  # the request next to it is unharmed


async def test_a_schema_is_compiled_once_then_cached(engine: HFEngine) -> None:
    schema = {"type": "object", "properties": {"k": {"type": "integer"}}, "required": ["k"]}
    await generate(engine, request("JSON please", schema=schema, max_tokens=8))
    assert engine._grammars is not None
    before = engine._grammars.compiled
    await generate(engine, request("JSON again", schema=schema, max_tokens=8))
    assert engine._grammars.compiled == before


@pytest.mark.parametrize("k", [0, 3])
async def test_logprobs_have_one_entry_per_token_and_match_the_text(
    engine: HFEngine, k: int
) -> None:
    result = await generate(
        engine, request("What is the capital of France?", max_tokens=10, logprobs=k)
    )
    assert result.logprobs is not None
    assert len(result.logprobs) == result.completion_tokens
    assert "".join(t.token for t in result.logprobs) == result.text
    for entry in result.logprobs:
        assert entry.logprob <= 0.0
        assert len(entry.top) == k
        assert sum(math.exp(lp) for _, lp in entry.top) <= 1.0 + 1e-5
        if k:  # greedy: the chosen token is the most likely one
            assert entry.top[0] == (entry.token, entry.logprob)
            assert [lp for _, lp in entry.top] == sorted((lp for _, lp in entry.top), reverse=True)


async def test_logprobs_under_a_grammar_come_from_the_masked_logits(engine: HFEngine) -> None:
    result = await generate(
        engine, request(PROMPTS["enum"], schema=SCHEMAS["enum"], max_tokens=30, logprobs=5)
    )
    assert result.logprobs is not None
    assert "".join(t.token for t in result.logprobs) == result.text
    # The first token must open the object: with the mask, every alternative does too.
    assert all(tok.startswith("{") for tok, _ in result.logprobs[0].top)
    # Forced tokens (a single allowed continuation) have probability 1.
    assert any(t.logprob == 0.0 and len(t.top) == 1 for t in result.logprobs)


async def test_a_row_whose_grammar_fails_fails_alone(base_model_dir: Path) -> None:
    """The poisoned row picks a token its grammar forbids: its matcher refuses it and only that
    request fails; its constrained and free neighbours answer as they do alone."""
    sampler = PoisonedSampler("poison", mode="forbidden", after=2)
    eng = HFEngine(
        base_model_dir,
        EngineConfig(max_batch_size=8, hf=HFEngineConfig(max_wait_ms=50)),
        sampler=sampler,
    )
    await eng.start()
    try:
        await eng.add_adapter(ref("hr"))
        others = [
            request(PROMPTS["enum"], schema=SCHEMAS["enum"], adapter="hr"),
            request(PROMPTS["array"], schema=SCHEMAS["array"]),
            request("What is the capital of France?", max_tokens=12),
        ]
        alone = [(await generate(eng, r)).text for r in others]
        poison = request(PROMPTS["nested"], schema=SCHEMAS["nested"], request_id="poison")
        *answers, failed = await asyncio.gather(
            *(generate(eng, r) for r in others), generate(eng, poison), return_exceptions=True
        )
    finally:
        await eng.stop()
    assert isinstance(failed, EngineError), failed
    assert sampler.poisoned == 1
    assert [getattr(a, "text", a) for a in answers] == alone

"""The fake engine's structured output (the smallest valid instance of the schema) and its
placeholder logprobs."""

from __future__ import annotations

import json
import math
from enum import Enum
from typing import Any

import jsonschema
import pydantic
import pytest

from loramux.errors import InvalidRequestError
from loramux.serve.engine import generate
from loramux.serve.fake import FakeEngine
from loramux.serve.types import (
    FinishReason,
    GenerationRequest,
    SamplingParams,
    StructuredOutput,
)
from loramux.types import ChatMessage


class Colour(Enum):
    RED = "red"
    BLUE = "blue"


class Address(pydantic.BaseModel):
    city: str
    zip: str | None = None


class Person(pydantic.BaseModel):
    name: str
    age: int
    colour: Colour
    addresses: list[Address]
    home: Address
    nickname: str | None


VALID: dict[str, dict[str, Any]] = {
    "nested": {
        "type": "object",
        "properties": {
            "a": {"type": "object", "properties": {"b": {"type": "string"}}, "required": ["b"]}
        },
        "required": ["a"],
    },
    "enum": {"type": "object", "properties": {"x": {"enum": ["p", "q"]}}, "required": ["x"]},
    "array": {
        "type": "object",
        "properties": {"xs": {"type": "array", "items": {"type": "integer"}, "minItems": 2}},
        "required": ["xs"],
    },
    "bounds": {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "exclusiveMinimum": 3},
            "f": {"type": "number", "minimum": 1.5, "maximum": 9},
            "s": {"type": "string", "minLength": 3, "maxLength": 5},
            "when": {"type": "string", "format": "date-time"},
            "nullable": {"type": ["string", "null"]},
            "ok": {"type": "boolean"},
            "c": {"const": 7},
        },
        "required": ["n", "f", "s", "when", "nullable", "ok", "c"],
        "additionalProperties": False,
    },
    "pydantic": Person.model_json_schema(),
}


def request(
    structured: StructuredOutput | None = None, *, max_tokens: int = 200, **sampling: Any
) -> GenerationRequest:
    return GenerationRequest(
        "t",
        SamplingParams(max_tokens=max_tokens, structured=structured, **sampling),
        messages=(ChatMessage("user", "hello there friend"),),
    )


@pytest.fixture
async def engine() -> FakeEngine:
    eng = FakeEngine()
    await eng.start()
    return eng


@pytest.mark.parametrize("name", list(VALID))
async def test_structured_output_validates(engine: FakeEngine, name: str) -> None:
    result = await generate(engine, request(StructuredOutput(json.dumps(VALID[name]))))
    assert result.finish_reason == FinishReason.STOP
    jsonschema.validate(json.loads(result.text), VALID[name])


async def test_pydantic_output_parses_into_the_model(engine: FakeEngine) -> None:
    result = await generate(engine, request(StructuredOutput(json.dumps(VALID["pydantic"]))))
    assert Person.model_validate_json(result.text).colour is Colour.RED


async def test_json_object_is_an_empty_object(engine: FakeEngine) -> None:
    assert (await generate(engine, request(StructuredOutput()))).text == "{}"


async def test_max_tokens_cuts_the_json_with_length(engine: FakeEngine) -> None:
    schema = json.dumps(VALID["bounds"])
    result = await generate(engine, request(StructuredOutput(schema), max_tokens=2))
    assert result.finish_reason == FinishReason.LENGTH
    assert result.completion_tokens == 2


@pytest.mark.parametrize(
    "schema",
    [
        "{not json",
        json.dumps({"type": "nope"}),
        json.dumps({"type": "string", "pattern": "^a+$"}),
        json.dumps({"type": "string", "format": "ipv6"}),
        json.dumps({"$ref": "#/$defs/missing"}),
        json.dumps({"type": "object", "properties": 3}),
    ],
)
async def test_a_schema_it_cannot_satisfy_is_refused_on_response_format(
    engine: FakeEngine, schema: str
) -> None:
    with pytest.raises(InvalidRequestError) as err:
        await generate(engine, request(StructuredOutput(schema)))
    assert err.value.param == "response_format"
    assert err.value.message.startswith("response_format: ")


@pytest.mark.parametrize("k", [0, 1, 20])
async def test_logprobs_have_one_entry_per_token(engine: FakeEngine, k: int) -> None:
    result = await generate(engine, request(logprobs=k))
    assert result.logprobs is not None
    assert len(result.logprobs) == result.completion_tokens
    assert "".join(t.token for t in result.logprobs) == result.text
    for entry in result.logprobs:
        assert len(entry.top) == k
        assert sum(math.exp(lp) for _, lp in entry.top) <= 1.0


async def test_no_logprobs_unless_asked(engine: FakeEngine) -> None:
    assert (await generate(engine, request())).logprobs is None

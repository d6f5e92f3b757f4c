"""OpenAI wire models of the requests, kept apart from the domain types.

Every field of OpenAI's chat completions, completions and embeddings requests is declared
here, and a field that is not in the OpenAI API is refused with a 400 that names it, as OpenAI's
own API does (`extra="forbid"`; the error handler words it). A field loramux does not support is
accepted only at its no-op value (`frequency_penalty: 0`, `store: false`, ...) and refused
otherwise, naming it (`_refuse_unsupported`). docs/api.md has the table, per engine.

`to_input` converts at the edge into the gateway's engine-neutral `ChatInput` /
`CompletionInput` (`loramux.gateway.requests`).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from loramux.errors import InvalidRequestError
from loramux.gateway.requests import ChatInput, CompletionInput, SamplingInput
from loramux.gateway.tools import EMPTY_PARAMETERS, NAME_RE, FunctionTool, ToolsInput
from loramux.serve.types import SEED_MAX, SEED_MIN, StructuredOutput
from loramux.types import ChatMessage, ToolCall

MAX_STOP_SEQUENCES = 4
MAX_N = 16
MAX_TOP_LOGPROBS = 20
MAX_PROMPTS = 32


class _Strict(BaseModel):
    """A wire object: a field OpenAI does not define is a 400 naming it."""

    model_config = ConfigDict(extra="forbid")


# -- messages -------------------------------------------------------------------------------


class TextPart(_Strict):
    type: Literal["text"]
    text: str

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        kind = value.get("type") if isinstance(value, dict) else None
        if kind is not None and kind != "text":
            raise ValueError(
                f"content parts of type {kind!r} are not supported: the served models read text"
            )
        return value


class FunctionCallIn(_Strict):
    name: str
    arguments: str
    """JSON text, as the model wrote it."""


class ToolCallIn(_Strict):
    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ChatMessageIn(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"] = Field(
        description="`developer` is treated as `system`."
    )
    content: str | list[TextPart] | None = None
    name: str | None = None
    """Participant names are not supported: only null."""
    tool_calls: list[ToolCallIn] | None = None
    """Assistant turns: the calls it made."""
    tool_call_id: str | None = None
    """Tool turns: the call this is the result of."""
    refusal: str | None = None
    """Assistant turns: only null (loramux models do not refuse through this field)."""

    @field_validator("tool_calls")
    @classmethod
    def _calls_only_for_assistant(cls, value: list[ToolCallIn] | None, info: Any) -> Any:
        if value and info.data.get("role") != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        return value

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


def to_chat_messages(messages: list[ChatMessageIn]) -> tuple[ChatMessage, ...]:
    """Wire messages -> domain messages (`developer` becomes `system`); the gateway checks
    their count, length, tool turns and that a user message has text."""
    out = []
    for i, m in enumerate(messages):
        for field_name in ("name", "refusal"):
            if getattr(m, field_name) is not None:
                raise InvalidRequestError(
                    f"`{field_name}` on messages is not supported by loramux; leave it out",
                    param=f"messages.{i}.{field_name}",
                )
        if m.role == "tool" and not m.tool_call_id:
            raise InvalidRequestError(
                "a tool message needs the `tool_call_id` of the call it answers",
                param=f"messages.{i}.tool_call_id",
            )
        if m.role != "tool" and m.tool_call_id is not None:
            raise InvalidRequestError(
                "only tool messages carry tool_call_id", param=f"messages.{i}.tool_call_id"
            )
        calls = tuple(
            ToolCall(c.id, c.function.name, c.function.arguments) for c in m.tool_calls or ()
        )
        role = "system" if m.role == "developer" else m.role
        out.append(ChatMessage(role, m.text(), tool_calls=calls, tool_call_id=m.tool_call_id))
    return tuple(out)


# -- tools and structured output -------------------------------------------------------------


class FunctionDef(_Strict):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(_Strict):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Strict):
    name: str


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(_Strict):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError("use 1 to 64 letters, digits, _ or -")
        return value


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    def instruction(self) -> str | None:
        """What the model is told of a `json_schema` format: its name and description."""
        if self.type != "json_schema" or self.json_schema is None:
            return None
        about = f": {self.json_schema.description}" if self.json_schema.description else ""
        return f"Respond with JSON for `{self.json_schema.name}`{about}"

    def structured(self) -> StructuredOutput | None:
        from loramux.gateway.tools import check_schema

        if self.type == "text":
            if self.json_schema is not None:
                raise InvalidRequestError(
                    "json_schema is only allowed with type json_schema",
                    param="response_format.json_schema",
                )
            return None
        if self.type == "json_object":
            return StructuredOutput(None)
        if self.json_schema is None:
            raise InvalidRequestError(
                "response_format of type json_schema needs `json_schema`",
                param="response_format.json_schema",
            )
        schema = self.json_schema.schema_ or {"type": "object"}
        check_schema(schema, "response_format.json_schema.schema")
        return StructuredOutput(json.dumps(schema, separators=(",", ":")))


class StreamOptions(_Strict):
    include_usage: StrictBool = False
    """Strict: `true` or `false`, never a string such as `"yes"` (400)."""
    include_obfuscation: None | Literal[False] = None
    """Only false/null: loramux does not pad stream chunks."""


# -- the requests ----------------------------------------------------------------------------

# OpenAI fields loramux accepts only at the value that changes nothing: name -> (allowed, why).
_NO_OP: dict[str, tuple[tuple[Any, ...], str]] = {
    "frequency_penalty": ((None, 0, 0.0), "frequency penalties are not supported"),
    "presence_penalty": ((None, 0, 0.0), "presence penalties are not supported"),
    "logit_bias": ((None, {}), "logit_bias is not supported"),
    "store": ((None, False), "loramux does not store completions (Stored Completions API)"),
    "metadata": ((None, {}), "metadata goes with `store`, which loramux does not support"),
    "service_tier": ((None, "auto", "default"), "loramux has one service tier"),
    "modalities": ((None, ["text"]), "loramux generates text only"),
    "audio": ((None,), "audio output is not supported"),
    "prediction": ((None,), "predicted outputs are not supported"),
    "reasoning_effort": ((None,), "the served models do not reason in a separate channel"),
    "verbosity": ((None,), "verbosity is not supported"),
    "web_search_options": ((None,), "web search is not supported"),
    "prompt_cache_key": ((None,), "prompt cache keys are not supported"),
    "prompt_cache_retention": ((None,), "prompt cache retention is not supported"),
    "prompt_cache_options": ((None,), "prompt cache options are not supported"),
    "functions": ((None,), "`functions` is deprecated: send `tools`"),
    "function_call": ((None,), "`function_call` is deprecated: send `tool_choice`"),
    "suffix": ((None, ""), "suffix (insertion) is not supported"),
}


class _SamplingFields(_Strict):
    model: str = Field(description="Base model id, an adapter name, or `name@version`.")
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2, allow_inf_nan=False)
    """Below `serve.types.GREEDY_BELOW` (1e-5) it means greedy decoding (as vLLM reads it)."""
    top_p: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    """Below `serve.types.GREEDY_BELOW` it means top-1, that is greedy decoding."""
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
    """A signed 64-bit integer (what torch generators and vLLM take); outside it, HTTP 400."""
    n: int | None = Field(default=None, ge=1, le=MAX_N)
    stream: StrictBool | None = False
    """Strict: `true` or `false`, never a string such as `"yes"` (400)."""
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, max_length=256)
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed")
        if isinstance(value, list) and any(not s for s in value) or value == "":
            raise ValueError("stop sequences must not be empty")
        return value

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def _refuse_unsupported(self) -> None:
        """A supported-only-as-no-op field with another value: 400 naming it."""
        for name, (allowed, why) in _NO_OP.items():
            if name in type(self).model_fields:
                value = getattr(self, name)
                if value not in allowed:
                    raise InvalidRequestError(
                        f"`{name}` is not supported by loramux ({why}); leave it out", param=name
                    )
        if self.stream_options is not None and not self.stream:
            raise InvalidRequestError(
                "stream_options is only allowed with stream: true", param="stream_options"
            )

    def sampling(self, max_tokens: int | None, logprobs: int | None) -> SamplingInput:
        return SamplingInput(
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=self.stop_list(),
            seed=self.seed,
            n=self.n or 1,
            logprobs=logprobs,
        )

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: StrictBool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    tools: list[ToolDef] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: StrictBool | None = None
    response_format: ResponseFormat | None = None
    safety_identifier: str | None = Field(default=None, max_length=256)
    """Who asks (OpenAI's successor of `user`): feeds the sticky A/B assignment like `user`."""
    store: bool | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    web_search_options: dict[str, Any] | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None

    def to_input(self) -> ChatInput:
        """The gateway's view of this request (`max_completion_tokens` wins over `max_tokens`).

        Raises:
            InvalidRequestError: an unsupported field with a value that would change the
                answer, `top_logprobs` without `logprobs`, a malformed `response_format`.
        """
        self._refuse_unsupported()
        if self.top_logprobs is not None and not self.logprobs:
            raise InvalidRequestError("top_logprobs needs logprobs: true", param="top_logprobs")
        logprobs = (self.top_logprobs or 0) if self.logprobs else None
        return ChatInput(
            model=self.model,
            messages=to_chat_messages(self.messages),
            sampling=self.sampling(self.max_completion_tokens or self.max_tokens, logprobs),
            user=self.user or self.safety_identifier,
            tools=self._tools(),
            response_format=self.response_format.structured() if self.response_format else None,
            format_instruction=self.response_format.instruction() if self.response_format else None,
        )

    def _tools(self) -> ToolsInput | None:
        if self.tools is None and self.tool_choice is None and self.parallel_tool_calls is None:
            return None
        tools = tuple(
            FunctionTool(
                name=t.function.name,
                description=t.function.description,
                parameters=t.function.parameters
                if t.function.parameters is not None
                else dict(EMPTY_PARAMETERS),
                strict=bool(t.function.strict),
            )
            for t in self.tools or ()
        )
        choice = self.tool_choice
        if isinstance(choice, NamedToolChoice):
            return ToolsInput(
                tools, "function", choice.function.name, self.parallel_tool_calls is not False
            )
        return ToolsInput(
            tools,
            choice or ("auto" if tools else "none"),
            None,
            True if self.parallel_tool_calls is None else self.parallel_tool_calls,
        )


class CompletionRequest(_SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    """Text, or a list of texts; token ids are refused (400) in `to_inputs`."""
    echo: StrictBool | None = False
    logprobs: int | None = Field(default=None, ge=0, le=5)
    best_of: int | None = Field(default=None, ge=1, le=MAX_N)
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def _prompts(cls, value: Any) -> Any:
        if isinstance(value, list) and not 1 <= len(value) <= MAX_PROMPTS:
            raise ValueError(f"send 1 to {MAX_PROMPTS} prompts")
        return value

    def prompts(self) -> list[str]:
        if isinstance(self.prompt, str):
            return [self.prompt]
        if all(isinstance(p, str) for p in self.prompt):
            return list(self.prompt)  # type: ignore[arg-type]
        raise InvalidRequestError(
            "prompt as token ids is not supported: send text (a string or a list of strings)",
            param="prompt",
        )

    def to_inputs(self) -> list[CompletionInput]:
        """The gateway's view: one `CompletionInput` per prompt (raises as
        `ChatCompletionRequest.to_input`)."""
        self._refuse_unsupported()
        if self.best_of is not None and self.best_of != (self.n or 1):
            raise InvalidRequestError(
                "best_of other than n is not supported (loramux returns every choice it "
                "generates); leave best_of out",
                param="best_of",
            )
        if self.stream and self.best_of not in (None, 1):
            raise InvalidRequestError("best_of cannot be streamed", param="best_of")
        if self.echo and self.logprobs is not None:
            raise InvalidRequestError(
                "echo with logprobs is not supported (the prompt's own logprobs are not "
                "computed); leave one out",
                param="echo",
            )
        sampling = self.sampling(self.max_tokens, self.logprobs)
        return [
            CompletionInput(
                model=self.model, prompt=p, sampling=sampling, user=self.user, echo=bool(self.echo)
            )
            for p in self.prompts()
        ]


class EmbeddingRequest(_Strict):
    input: str | list[str] | list[int] | list[list[int]]
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = Field(default=None, max_length=256)

    def texts(self) -> list[str]:
        """The input as texts.

        Raises:
            InvalidRequestError: token ids (this embedder reads text), or no input.
        """
        value = self.input
        if isinstance(value, str):
            return [value]
        if not value:
            raise InvalidRequestError("input must not be empty", param="input")
        if all(isinstance(v, str) for v in value):
            return list(value)  # type: ignore[arg-type]
        raise InvalidRequestError(
            "input as token ids is not supported: send text (a string or a list of strings)",
            param="input",
        )

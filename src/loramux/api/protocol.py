"""OpenAI wire models (requests and responses), kept apart from the domain types.

Requests accept unknown fields (clients send many), which are logged at debug level and ignored.
`ChatCompletionRequest.to_input` and `CompletionRequest.to_input` convert at the edge into the
gateway's engine-neutral `ChatInput` / `CompletionInput` (`loramux.gateway.requests`).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from loramux.gateway.requests import ChatInput, CompletionInput, SamplingInput
from loramux.serve.types import SEED_MAX, SEED_MIN
from loramux.types import ChatMessage

logger = logging.getLogger(__name__)

MAX_STOP_SEQUENCES = 4


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")

    def unknown_fields(self) -> list[str]:
        return sorted((self.model_extra or {}).keys())


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text"]
    text: str


class ChatMessageIn(_Lenient):
    role: Literal["system", "developer", "user", "assistant"] = Field(
        description="`developer` is treated as `system`; tool messages are not supported."
    )
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


def to_chat_messages(messages: list[ChatMessageIn]) -> tuple[ChatMessage, ...]:
    """Wire messages -> domain messages (`developer` becomes `system`); the gateway checks
    their count, length and that a user message has text (`gateway.limits.check_messages`)."""
    return tuple(
        ChatMessage(role="system" if m.role == "developer" else m.role, content=m.text())
        for m in messages
    )


class StreamOptions(_Lenient):
    include_usage: StrictBool = False
    """Strict: `true` or `false`, never a string such as `"yes"` (400)."""


class _SamplingFields(_Lenient):
    model: str = Field(description="Base model id, an adapter name, or `name@version`.")
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2, allow_inf_nan=False)
    """Below `serve.types.GREEDY_BELOW` (1e-5) it means greedy decoding (as vLLM reads it)."""
    top_p: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    """Below `serve.types.GREEDY_BELOW` it means top-1, that is greedy decoding."""
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
    """A signed 64-bit integer (what torch generators and vLLM take); outside it, HTTP 400."""
    n: int = Field(default=1, ge=1, le=1, description="Only n=1 is supported.")
    stream: StrictBool = False
    """Strict: `true` or `false`, never a string such as `"yes"` (400)."""
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, max_length=256)

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed")
        return value

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def sampling(self, max_tokens: int | None) -> SamplingInput:
        return SamplingInput(
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=self.stop_list(),
            seed=self.seed,
        )


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    def to_input(self) -> ChatInput:
        """The gateway's view of this request (`max_completion_tokens` wins over `max_tokens`)."""
        return ChatInput(
            model=self.model,
            messages=to_chat_messages(self.messages),
            sampling=self.sampling(self.max_completion_tokens or self.max_tokens),
            user=self.user,
        )


class CompletionRequest(_SamplingFields):
    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("send exactly one prompt per request")
        return value

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def to_input(self) -> CompletionInput:
        """The gateway's view of this request."""
        return CompletionInput(
            model=self.model,
            prompt=self.prompt_text(),
            sampling=self.sampling(self.max_tokens),
            user=self.user,
        )


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_completion(
    request_id: str, model: str, text: str, finish: str, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
                "logprobs": None,
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chat_chunk(
    request_id: str,
    model: str,
    delta: dict[str, str],
    finish: str | None = None,
    usage_counts: dict[str, int] | None = None,
) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
        if usage_counts is None
        else [],
        **({"usage": usage_counts} if usage_counts is not None else {}),
    }


def text_completion(
    request_id: str,
    model: str,
    text: str,
    finish: str | None,
    usage_counts: dict[str, int] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"cmpl-{request_id}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
    }
    if usage_counts is not None:
        body["usage"] = usage_counts
    return body


def model_card(model_id: str, *, parent: str | None, created: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": "loramux",
        "root": parent or model_id,
        "parent": parent,
        **extra,
    }


def log_unknown_fields(body: _Lenient, request_id: str) -> None:
    unknown = body.unknown_fields()
    if unknown:
        logger.debug("request %s: ignoring unknown fields %s", request_id, ", ".join(unknown))

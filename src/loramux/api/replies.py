"""OpenAI wire shapes of the responses: completions, chunks, choices, logprobs, models,
embeddings. Pure functions from engine-neutral results to JSON-ready dicts."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from loramux.serve.types import TokenLogprob
from loramux.types import ToolCall


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def tool_call(call: ToolCall, index: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }
    return out if index is None else {"index": index, **out}


def chat_logprobs(tokens: Sequence[TokenLogprob] | None) -> dict[str, Any] | None:
    """`choices[].logprobs` of a chat completion (None when not asked for)."""
    if tokens is None:
        return None

    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}

    return {
        "content": [
            {**entry(t.token, t.logprob), "top_logprobs": [entry(a, lp) for a, lp in t.top]}
            for t in tokens
        ],
        "refusal": None,
    }


def completion_logprobs(
    tokens: Sequence[TokenLogprob] | None, offset: int = 0
) -> dict[str, Any] | None:
    """`choices[].logprobs` of a (legacy) text completion; `offset`: where the text starts."""
    if tokens is None:
        return None
    offsets, at = [], offset
    for t in tokens:
        offsets.append(at)
        at += len(t.token)
    return {
        "tokens": [t.token for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [dict(t.top) for t in tokens],
        "text_offset": offsets,
    }


def chat_choice(
    index: int,
    content: str | None,
    finish: str,
    *,
    calls: Sequence[ToolCall] = (),
    logprobs: Sequence[TokenLogprob] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if calls:
        message["tool_calls"] = [tool_call(c) for c in calls]
    return {
        "index": index,
        "message": message,
        "finish_reason": finish,
        "logprobs": chat_logprobs(logprobs),
    }


def chat_completion(
    request_id: str, model: str, choices: list[dict[str, Any]], counts: dict[str, int]
) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": counts,
    }


def chat_chunk(
    request_id: str,
    model: str,
    delta: dict[str, Any],
    finish: str | None = None,
    usage_counts: dict[str, int] | None = None,
    *,
    index: int = 0,
    logprobs: Sequence[TokenLogprob] | None = None,
) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": index,
                "delta": delta,
                "finish_reason": finish,
                "logprobs": chat_logprobs(logprobs),
            }
        ]
        if usage_counts is None
        else [],
        **({"usage": usage_counts} if usage_counts is not None else {}),
    }


def text_choice(
    index: int,
    text: str,
    finish: str | None,
    logprobs: Sequence[TokenLogprob] | None = None,
    offset: int = 0,
) -> dict[str, Any]:
    return {
        "index": index,
        "text": text,
        "finish_reason": finish,
        "logprobs": completion_logprobs(logprobs, offset),
    }


def text_completion(
    request_id: str,
    model: str,
    choices: list[dict[str, Any]],
    usage_counts: dict[str, int] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"cmpl-{request_id}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
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


def embeddings(model: str, vectors: Any, prompt_tokens: int, *, base64: bool) -> dict[str, Any]:
    """`/v1/embeddings`: one entry per input, float lists or base64 of little-endian float32."""
    import base64 as b64

    import numpy as np

    data = []
    for i, vector in enumerate(vectors):
        array = np.asarray(vector, dtype="<f4")
        value: Any = b64.b64encode(array.tobytes()).decode() if base64 else array.tolist()
        data.append({"object": "embedding", "index": i, "embedding": value})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }

"""The OpenAI wire of a vLLM server, for the `remote` engine: its streamed answers and errors,
structured output and logprobs.

`sse_chunks` reads a streamed answer into chunks, `request_error` turns an error answer into the
error a client gets. What `serve/remote.py` adds to a request body for a vLLM OpenAI server
(`response_format`, `logprobs` / `top_logprobs`), and how it reads the logprobs back out of a
streamed choice, for both the chat and the completions endpoint (their logprobs have different
shapes).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from loramux.errors import (
    ContextLengthExceededError,
    EngineError,
    EngineUnavailableError,
    InvalidRequestError,
)
from loramux.serve.replicas import message_of
from loramux.serve.types import (
    FinishReason,
    GenerationChunk,
    GenerationRequest,
    SamplingParams,
    TokenLogprob,
)


def request_fields(s: SamplingParams, *, completions: bool) -> dict[str, Any]:
    """`response_format` and the logprobs fields of one request body.

    Raises:
        InvalidRequestError: the schema is not JSON (param `response_format`).
    """
    body: dict[str, Any] = {}
    if s.structured is not None:
        if s.structured.json_schema is None:
            body["response_format"] = {"type": "json_object"}
        else:
            try:
                schema = json.loads(s.structured.json_schema)
            except ValueError as exc:
                raise InvalidRequestError(
                    f"response_format: the JSON schema is not JSON ({exc})",
                    param="response_format",
                ) from exc
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": schema, "strict": True},
            }
    if s.logprobs is not None:
        if completions:
            body["logprobs"] = s.logprobs
        else:
            body["logprobs"] = True
            body["top_logprobs"] = s.logprobs
    return body


def choice_logprobs(
    choice: dict[str, Any], k: int | None, *, completions: bool
) -> list[TokenLogprob] | None:
    """The logprobs of one streamed choice, `k` alternatives a token (None when the request
    asked none, or the choice has none).

    Chat: `logprobs.content[]` of `{token, logprob, top_logprobs: [{token, logprob}]}`;
    completions: `logprobs` of parallel lists `tokens`, `token_logprobs`, `top_logprobs` (a
    dict per token, which may hold the chosen token besides the k most likely).
    """
    lp = choice.get("logprobs")
    if k is None or not isinstance(lp, dict):
        return None
    if not completions:
        return [
            TokenLogprob(
                str(e["token"]),
                float(e["logprob"]),
                tuple(
                    (str(t["token"]), float(t["logprob"]))
                    for t in (e.get("top_logprobs") or [])[:k]
                ),
            )
            for e in lp.get("content") or []
        ]
    tokens = lp.get("tokens") or []
    values = lp.get("token_logprobs") or []
    tops = lp.get("top_logprobs") or [None] * len(tokens)
    out = []
    for token, value, top in zip(tokens, values, tops, strict=False):
        ranked = sorted((top or {}).items(), key=lambda kv: -float(kv[1]))
        out.append(
            TokenLogprob(
                str(token),
                float(value) if value is not None else float("nan"),
                tuple((str(t), float(v)) for t, v in ranked[:k]),
            )
        )
    return out


async def sse_chunks(
    resp: httpx.Response, req: GenerationRequest
) -> AsyncIterator[GenerationChunk]:
    """Turn vLLM's SSE stream into chunks; the last one carries the finish reason and usage."""
    completions = req.prompt is not None
    finish: FinishReason | None = None
    usage: dict[str, Any] = {}
    async for line in resp.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        event = json.loads(data)
        if "error" in event:
            raise EngineError(f"vLLM failed mid-stream: {event['error'].get('message', event)}")
        usage = event.get("usage") or usage
        for choice in event.get("choices") or []:
            text = choice.get("text") if completions else (choice.get("delta") or {}).get("content")
            lps = choice_logprobs(choice, req.sampling.logprobs, completions=completions)
            if text or lps:
                yield GenerationChunk(
                    text or "",
                    None,
                    int(usage.get("prompt_tokens", 0)),
                    int(usage.get("completion_tokens", 0)),
                    logprobs=lps,
                )
            if choice.get("finish_reason"):
                finish = (
                    FinishReason.LENGTH
                    if choice["finish_reason"] == "length"
                    else FinishReason.STOP
                )
    if finish is None:
        raise EngineError("the vLLM stream ended without a finish reason; retry")
    yield GenerationChunk(
        "",
        finish_reason=finish,
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
    )


def request_error(resp: httpx.Response) -> Exception:
    """A vLLM error answer as the loramux error a client gets (400, 503, 500)."""
    message = message_of(resp)
    if resp.status_code == 400 and "context length" in message.lower():
        return ContextLengthExceededError(
            f"the prompt does not fit the model's context ({message}); shorten the messages or "
            "lower max_tokens",
            param="max_tokens",
        )
    if resp.status_code in (400, 422):
        bad_format = any(w in message.lower() for w in ("schema", "grammar", "json"))
        param = "response_format" if bad_format else None
        return InvalidRequestError(f"vLLM refused the request: {message}", param=param)
    if resp.status_code in (502, 503, 504):
        return EngineUnavailableError(f"a vLLM replica is unavailable: {message}")
    return EngineError(f"vLLM failed: {message}")

"""The OpenAI wire fields of structured output and logprobs, for the `remote` engine.

What `serve/remote.py` adds to a request body for a vLLM OpenAI server (`response_format`,
`logprobs` / `top_logprobs`), and how it reads the logprobs back out of a streamed choice, for
both the chat and the completions endpoint (their logprobs have different shapes).
"""

from __future__ import annotations

import json
from typing import Any

from loramux.errors import InvalidRequestError
from loramux.serve.types import SamplingParams, TokenLogprob


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

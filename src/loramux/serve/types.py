"""Engine-neutral request and result types.

The API converts OpenAI wire models into these at the edge; engines know nothing about HTTP.
The messages and adapter references they carry come from `loramux.types`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from loramux.types import AdapterRef, ChatMessage


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int | None = None
    """Most tokens to generate; None lets the engine pick (its default, capped by the context)."""
    temperature: float = 1.0
    """0 means greedy decoding."""
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    """Generation stops before the first occurrence of any of these strings."""
    seed: int | None = None
    """Makes sampling repeatable for the same request."""
    ignore_eos: bool = False
    """Keep generating past the end-of-sequence token (benchmarks want fixed lengths)."""


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    sampling: SamplingParams
    messages: tuple[ChatMessage, ...] = ()
    """Chat input; the engine applies the base model's chat template."""
    prompt: str | None = None
    """Raw text input (completions API); used instead of `messages` when set."""
    adapter: AdapterRef | None = None
    """None means the base model."""


class FinishReason(StrEnum):
    STOP = "stop"
    LENGTH = "length"


@dataclass
class GenerationChunk:
    """A piece of streamed output; the last chunk of a request has `finish_reason` set."""

    text: str
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    adapter_load_s: float | None = None
    """On a request's first chunk: seconds it waited for its adapter to load (a cold start);
    None when the adapter was loaded already or the request uses none."""


@dataclass
class GenerationResult:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    timings: dict[str, float] = field(default_factory=dict)

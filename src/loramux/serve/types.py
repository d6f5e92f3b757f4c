"""Engine-neutral request and result types.

The API converts OpenAI wire models into these at the edge; engines know nothing about HTTP.
The messages and adapter references they carry come from `loramux.types`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from loramux.types import AdapterRef, ChatMessage

GREEDY_BELOW = 1e-5
"""A temperature or top_p below this means greedy decoding (vLLM's own rule for temperature):
dividing logits by a smaller temperature overflows, and a smaller top_p rounds to 0 in float32,
either of which leaves no token to sample."""
SEED_MIN = -(2**63)
SEED_MAX = 2**63 - 1
"""Seeds are signed 64-bit integers: what torch generators and vLLM's server accept."""


@dataclass(frozen=True)
class StructuredOutput:
    """Constrained decoding: every token the engine picks keeps the output a prefix of one JSON
    value, so the finished text parses and validates.

    `json_schema` is the schema as JSON text (`json.dumps(schema)`, property order kept: the
    reply follows it), also the key grammar caches use; None means any JSON object
    (`response_format: json_object`).
    """

    json_schema: str | None = None


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token's log-probability, with the most likely alternatives at that step
    (the OpenAI `logprobs.content[]` entry)."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()
    """(token, logprob) pairs, most likely first; as many as `SamplingParams.logprobs` asks."""


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
    structured: StructuredOutput | None = None
    """Constrain the output to JSON (`response_format`, forced tool calls); None: free text."""
    logprobs: int | None = None
    """None: no log-probabilities; k >= 0: each token's logprob and its k top alternatives."""

    @property
    def greedy(self) -> bool:
        """True when this samples nothing: temperature or top_p under `GREEDY_BELOW`."""
        return self.temperature < GREEDY_BELOW or self.top_p < GREEDY_BELOW

    def normalized(self) -> SamplingParams:
        """The same sampling in the form every engine honours: greedy as temperature 0 and
        top_p 1 (see `GREEDY_BELOW`)."""
        if self.greedy and (self.temperature, self.top_p) != (0.0, 1.0):
            return replace(self, temperature=0.0, top_p=1.0)
        return self


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
    buffered: bool = False
    """The caller collects the whole answer before anything reaches the client (a request
    without `stream`): an engine with replicas (`remote`) may then run it again from the start
    on another replica when one dies mid-answer. In-process engines have nothing to fail over to."""


class FinishReason(StrEnum):
    STOP = "stop"
    LENGTH = "length"


@dataclass
class GenerationChunk:
    """A piece of streamed output; the last chunk of a request has `finish_reason` set.

    The token counts are the request's so far, on every chunk where the engine knows them (so a
    stream cut short is still charged what it generated), and final on the last chunk.
    """

    text: str
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    adapter_load_s: float | None = None
    """On a request's first chunk: seconds it waited for its adapter to load (a cold start);
    None when the adapter was loaded already or the request uses none."""
    logprobs: list[TokenLogprob] | None = None
    """When `SamplingParams.logprobs` is set: the tokens generated since the previous chunk."""


@dataclass
class GenerationResult:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    timings: dict[str, float] = field(default_factory=dict)
    logprobs: list[TokenLogprob] | None = None
    """Every generated token's logprob when `SamplingParams.logprobs` is set."""

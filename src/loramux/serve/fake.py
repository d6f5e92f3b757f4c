"""A deterministic, dependency-free engine for tests and gateway benchmarks.

It "generates" by echoing the last user message word by word behind a tag naming the adapter
(`[hr] ...` or `[base] ...`), one word per token, so tests can check which adapter answered,
streaming, `max_tokens`, stop strings and cancellation without loading a model.

Structured output is honoured: the answer is the smallest instance of the schema
(`fake_json`), streamed one space-separated piece per token, with no tag. Logprobs are
placeholders of the right shape: each token log(1/2), its alternatives `alt0`, `alt1`, ... at
log(1/40) each (so a token's probabilities never sum over 1).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from loramux.errors import EngineUnavailableError, InvalidRequestError
from loramux.serve.engine import resolve_max_tokens
from loramux.serve.fake_json import minimal_text
from loramux.serve.textstream import TextStream
from loramux.serve.types import FinishReason, GenerationChunk, GenerationRequest, TokenLogprob
from loramux.types import AdapterRef

if TYPE_CHECKING:
    from loramux.config import LoramuxConfig


class FakeEngine:
    """Echo engine; `token_delay_s` slows it down to look like a real one."""

    def __init__(
        self,
        *,
        context_length: int = 2048,
        default_max_tokens: int = 64,
        token_delay_s: float = 0.0,
    ) -> None:
        self._context_length = context_length
        self._default_max_tokens = default_max_tokens
        self._token_delay_s = token_delay_s
        self._adapters: dict[str, AdapterRef] = {}
        self._ready = False
        self.active_requests = 0
        """Requests being generated right now (tests look at it for cancellation)."""

    @classmethod
    def from_config(cls, config: LoramuxConfig) -> FakeEngine:
        e = config.engine
        return cls(
            context_length=e.context_length or 2048,
            default_max_tokens=e.default_max_tokens,
            token_delay_s=e.fake.token_delay_s,
        )

    @property
    def name(self) -> str:
        return "fake"

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def context_length(self) -> int:
        return self._context_length

    async def start(self) -> None:
        self._ready = True

    async def stop(self) -> None:
        self._ready = False

    async def add_adapter(self, adapter: AdapterRef) -> None:
        self._adapters[adapter.key] = adapter

    async def remove_adapter(self, key: str) -> None:
        self._adapters.pop(key, None)

    def loaded_adapters(self) -> list[str]:
        return sorted(self._adapters)

    def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        return self._stream(request)

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        if not self._ready:
            raise EngineUnavailableError("the fake engine is not started")
        if request.adapter is not None and request.adapter.key not in self._adapters:
            raise InvalidRequestError(f"adapter {request.adapter.key} is not loaded")
        prompt_words = _prompt_words(request)
        max_tokens = resolve_max_tokens(
            len(prompt_words),
            request.sampling.max_tokens,
            self._context_length,
            self._default_max_tokens,
        )
        tag = request.adapter.key.split("@")[0] if request.adapter else "base"
        last_user = next(
            (m.content for m in reversed(request.messages) if m.role == "user"),
            request.prompt or "",
        )
        words = [f"[{tag}]", *last_user.split()]
        structured = request.sampling.structured
        if structured is not None:
            words = minimal_text(structured.json_schema).split(" ")
        stream = TextStream(lambda ids: " ".join(words[i] for i in ids), request.sampling.stop)
        k = request.sampling.logprobs
        pending: list[TokenLogprob] = []

        def logprobs() -> list[TokenLogprob] | None:
            nonlocal pending
            taken, pending = pending, []
            return taken if k is not None else None

        self.active_requests += 1
        try:
            finish = FinishReason.STOP
            produced = 0
            for i in range(len(words)):
                if produced >= max_tokens:
                    finish = FinishReason.LENGTH
                    break
                if self._token_delay_s:
                    await asyncio.sleep(self._token_delay_s)
                produced += 1
                if k is not None:
                    pending.append(_logprob(words[i] if i == 0 else " " + words[i], k))
                delta = stream.push(i)
                if delta:
                    yield GenerationChunk(
                        delta, None, len(prompt_words), produced, None, logprobs()
                    )
                if stream.stopped:
                    break
            tail = stream.flush()
            yield GenerationChunk(
                tail,
                finish_reason=finish,
                prompt_tokens=len(prompt_words),
                completion_tokens=produced,
                logprobs=logprobs(),
            )
        finally:
            self.active_requests -= 1


def _logprob(token: str, k: int) -> TokenLogprob:
    """A placeholder logprob: the token at log(1/2), `k - 1` alternatives at log(1/40)."""
    chosen, alternative = math.log(0.5), math.log(1 / 40)
    top = [(token, chosen), *((f"alt{j}", alternative) for j in range(k - 1))]
    return TokenLogprob(token, chosen, tuple(top[:k]))


def _prompt_words(request: GenerationRequest) -> Sequence[str]:
    if request.prompt is not None:
        return request.prompt.split()
    return [w for m in request.messages for w in (m.role, *m.content.split())]

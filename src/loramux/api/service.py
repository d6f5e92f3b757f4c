"""The gateway's request service: wire request -> adapter choice -> engine -> result.

Handlers call one method here; this is where the `model` name is resolved, limits are checked
and OpenAI parameters become a `GenerationRequest`. It logs one line per request (ids, adapter,
token counts, latency) and never the prompt or the completion.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from loramux.adapters.catalog import AdapterCatalog
from loramux.adapters.version import AdapterVersion
from loramux.api.protocol import ChatCompletionRequest, CompletionRequest, _SamplingFields
from loramux.config import LoramuxConfig
from loramux.errors import InvalidRequestError
from loramux.serve.engine import Engine, generate
from loramux.serve.types import (
    ChatMessage,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    SamplingParams,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedRequest:
    """A request ready for the engine, with what the response must say about it."""

    generation: GenerationRequest
    model: str
    """The `model` echoed in the response (what the client asked for)."""
    adapter: AdapterVersion | None

    def headers(self) -> dict[str, str]:
        if self.adapter is None:
            return {"x-loramux-adapter": "base"}
        return {
            "x-loramux-adapter": self.adapter.name,
            "x-loramux-adapter-version": self.adapter.version,
        }


class ChatService:
    def __init__(self, config: LoramuxConfig, engine: Engine, catalog: AdapterCatalog) -> None:
        self.config = config
        self.engine = engine
        self.catalog = catalog

    def prepare_chat(self, body: ChatCompletionRequest, request_id: str) -> PreparedRequest:
        """Check a chat request and resolve its model.

        Raises:
            ModelNotFoundError: unknown model.
            InvalidRequestError: limits or message structure.
        """
        messages = tuple(
            ChatMessage(role="system" if m.role == "developer" else m.role, content=m.text())
            for m in body.messages
        )
        if not any(m.role == "user" and m.content.strip() for m in messages):
            raise InvalidRequestError(
                "messages must contain at least one user message with text", param="messages"
            )
        adapter = self.catalog.resolve(body.model)
        max_tokens = body.max_completion_tokens or body.max_tokens
        generation = GenerationRequest(
            request_id=request_id,
            sampling=self._sampling(body, max_tokens),
            messages=messages,
            adapter=adapter.ref() if adapter else None,
        )
        return PreparedRequest(generation, body.model, adapter)

    def prepare_completion(self, body: CompletionRequest, request_id: str) -> PreparedRequest:
        """Check a completions request and resolve its model (raises as `prepare_chat`)."""
        prompt = body.prompt_text()
        if not prompt:
            raise InvalidRequestError("prompt must not be empty", param="prompt")
        adapter = self.catalog.resolve(body.model)
        generation = GenerationRequest(
            request_id=request_id,
            sampling=self._sampling(body, body.max_tokens),
            prompt=prompt,
            adapter=adapter.ref() if adapter else None,
        )
        return PreparedRequest(generation, body.model, adapter)

    def _sampling(self, body: _SamplingFields, max_tokens: int | None) -> SamplingParams:
        limit = self.config.engine.max_new_tokens
        if max_tokens is not None and max_tokens > limit:
            raise InvalidRequestError(
                f"max_tokens is {max_tokens}, over this server's limit of {limit}; "
                f"ask for at most {limit}",
                param="max_tokens",
            )
        e = self.config.engine
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=e.default_temperature if body.temperature is None else body.temperature,
            top_p=e.default_top_p if body.top_p is None else body.top_p,
            stop=body.stop_list(),
            seed=body.seed,
        )

    async def complete(self, prepared: PreparedRequest) -> GenerationResult:
        started = time.perf_counter()
        result = await generate(self.engine, prepared.generation)
        self._log(prepared, result.prompt_tokens, result.completion_tokens, started)
        return result

    async def stream(self, prepared: PreparedRequest) -> AsyncIterator[GenerationChunk]:
        """Start streaming; input errors are raised here, before the response starts."""
        started = time.perf_counter()
        chunks = self.engine.stream(prepared.generation)
        first = await anext(chunks)
        return self._logged(prepared, first, chunks, started)

    async def _logged(
        self,
        prepared: PreparedRequest,
        first: GenerationChunk,
        rest: AsyncIterator[GenerationChunk],
        started: float,
    ) -> AsyncIterator[GenerationChunk]:
        last = first
        try:
            yield first
            if first.finish_reason is None:
                async for chunk in rest:
                    last = chunk
                    yield chunk
        finally:
            await rest.aclose()  # type: ignore[attr-defined]
            self._log(prepared, last.prompt_tokens, last.completion_tokens, started)

    def _log(
        self, prepared: PreparedRequest, prompt_tokens: int, completion_tokens: int, started: float
    ) -> None:
        logger.info(
            "request %s model=%s adapter=%s prompt_tokens=%d completion_tokens=%d ms=%.1f",
            prepared.generation.request_id,
            prepared.model,
            prepared.adapter.key if prepared.adapter else "base",
            prompt_tokens,
            completion_tokens,
            1000 * (time.perf_counter() - started),
        )

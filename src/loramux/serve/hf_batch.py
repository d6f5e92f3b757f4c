"""The `hf` engine's batching state: one request's row, worker control messages, the running
batch with its merged KV cache, and sampling. Used by the worker thread of `serve/hf.py` only.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loramux.serve import kvcache
from loramux.serve.textstream import TextStream
from loramux.serve.types import FinishReason, GenerationChunk, GenerationRequest, TokenLogprob
from loramux.types import AdapterRef

if TYPE_CHECKING:
    import torch

    from loramux.serve.hf_grammar import RowGrammar


@dataclass(eq=False)
class Row:
    """One request's state inside the worker."""

    request: GenerationRequest
    prompt_ids: list[int]
    max_tokens: int
    slot: str
    stream: TextStream
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue[GenerationChunk | BaseException]
    generator: torch.Generator | None
    cancelled: threading.Event = field(default_factory=threading.Event)
    generated: int = 0
    output_ids: list[int] = field(default_factory=list)
    """Tokens generated so far (what a re-run prefills after the prompt)."""
    position: int = 0
    next_token: int = -1
    grammar: RowGrammar | None = None
    """The row's constrained-decoding state (`SamplingParams.structured`); None: free text."""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    """With `SamplingParams.logprobs`: the picked tokens' logprobs not sent yet."""

    def context_ids(self) -> list[int]:
        """The prompt and every token generated so far: prefilling these gives the logits of
        the next decode step (how a row is re-run alone after a failed batch step)."""
        return [*self.prompt_ids, *self.output_ids]

    def send(self, item: GenerationChunk | BaseException) -> None:
        try:
            self.loop.call_soon_threadsafe(self.out.put_nowait, item)
        except RuntimeError:  # the caller's event loop is gone: nobody is listening any more
            self.cancelled.set()


@dataclass
class Control:
    op: str  # "add" | "remove" | "stop"
    adapter: AdapterRef | None = None
    weights: Any = None
    """`add`: the adapter's files as `hf_slots.read_weights` read them, off the worker thread."""
    key: str = ""
    done: Future[None] = field(default_factory=Future)


def take(inbox: queue.Queue[Row | Control], *, block: bool) -> list[Row | Control]:
    """Everything in the worker's inbox (waiting for the first item when `block`)."""
    items: list[Row | Control] = []
    if block:
        items.append(inbox.get())
    while True:
        try:
            items.append(inbox.get_nowait())
        except queue.Empty:
            return items


def gather(inbox: queue.Queue[Row | Control], room: int, wait_s: float) -> list[Row | Control]:
    """Wait up to `wait_s` for up to `room` more items to start a batch with."""
    deadline = time.monotonic() + wait_s
    items: list[Row | Control] = []
    while len(items) < room:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            items.append(inbox.get(timeout=left))
        except queue.Empty:
            break
    return items


class Batch:
    """The running batch: its rows, their merged KV cache and attention mask."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.cache: Any = None
        self.mask: Any = None

    def merge(self, joining: list[Row], cache: Any, mask: Any) -> None:
        if not self.rows:
            self.rows, self.cache, self.mask = list(joining), cache, mask
            return
        self.cache, self.mask = kvcache.concat(self.cache, self.mask, cache, mask)
        self.rows.extend(joining)

    def extend_mask(self) -> None:
        import torch

        ones = torch.ones((self.mask.shape[0], 1), dtype=self.mask.dtype, device=self.mask.device)
        self.mask = torch.cat([self.mask, ones], dim=1)

    def remove(self, done: list[Row]) -> None:
        gone = set(map(id, done))
        keep = [i for i, s in enumerate(self.rows) if id(s) not in gone]
        if not keep:
            self.clear()
            return
        self.rows = [self.rows[i] for i in keep]
        self.cache, self.mask = kvcache.select(self.cache, self.mask, keep)

    def clear(self) -> None:
        self.rows, self.cache, self.mask = [], None, None


RowSampler = Callable[["torch.Tensor", Row, int], int]
"""Picks one row's next token from its logits and the greedy token (the argmax of the batch)."""


def sample_row(logits: torch.Tensor, row: Row, greedy_token: int) -> int:
    """Greedy (see `SamplingParams.greedy`), else temperature + top-p with the row's generator.

    Raises:
        RuntimeError: no token can be sampled (probabilities that are NaN or all zero).
    """
    import torch

    params = row.request.sampling
    if params.greedy or row.generator is None:
        return greedy_token
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = sorted_probs.cumsum(-1) - sorted_probs < params.top_p
        sorted_probs = sorted_probs * keep
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return int(torch.multinomial(probs.cpu(), 1, generator=row.generator).item())


def sample(
    logits: torch.Tensor,
    rows: list[Row],
    pick: RowSampler = sample_row,
    decode: Callable[[int], str] = str,
) -> list[int | Exception]:
    """Each row's next token, or the exception its sampling raised: a row that cannot be
    sampled (or whose grammar fails) fails alone, never its neighbours.

    A row with a grammar has the grammar's mask applied to its logits first, and its matcher
    advanced with the picked token; a row asking for logprobs gets them (`Row.logprobs`), from
    the masked logits, with token text from `decode`.
    """
    from loramux.serve.hf_grammar import token_logprobs

    failed: dict[int, Exception] = {}
    for i, row in enumerate(rows):
        if row.grammar is not None:
            try:
                row.grammar.mask(logits[i])
            except Exception as exc:  # noqa: BLE001 - the row's request gets the error
                failed[i] = exc
    greedy: list[int] = logits.argmax(dim=-1).tolist()
    tokens: list[int | Exception] = []
    for i, row in enumerate(rows):
        if i in failed:
            tokens.append(failed[i])
            continue
        try:
            token = pick(logits[i], row, greedy[i])
            params = row.request.sampling
            if params.logprobs is not None:
                temperature = 1.0 if params.greedy else params.temperature
                row.logprobs.append(
                    token_logprobs(logits[i], token, params.logprobs, decode, temperature)
                )
            if row.grammar is not None:
                row.grammar.accept(token)
            tokens.append(token)
        except Exception as exc:  # noqa: BLE001 - the row's request gets the error
            tokens.append(exc)
    return tokens


def push(row: Row, token: int, eos_ids: set[int]) -> bool:
    """Send a row's new token's text (and logprobs); True when the row is finished: an end of
    sequence, a stop string, `max_tokens`, or a finished JSON value under a grammar."""
    finish: FinishReason | None = None
    prompt_tokens = len(row.prompt_ids)
    if token in eos_ids and not row.request.sampling.ignore_eos:
        finish = FinishReason.STOP
        if row.logprobs:  # the end of sequence is not part of the output
            row.logprobs.pop()
    else:
        row.generated += 1
        row.output_ids.append(token)
        row.next_token = token
        delta = row.stream.push(token)
        if row.stream.stopped or (row.grammar is not None and row.grammar.complete):
            finish = FinishReason.STOP
        elif row.generated >= row.max_tokens:
            finish = FinishReason.LENGTH
        if delta:
            row.send(GenerationChunk(delta, None, prompt_tokens, row.generated, logprobs=_lp(row)))
    if finish is None:
        return False
    row.send(
        GenerationChunk(
            row.stream.flush(),
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=row.generated,
            logprobs=_lp(row),
        )
    )
    return True


def _lp(row: Row) -> list[TokenLogprob] | None:
    """The `logprobs` of the row's next chunk (the tokens since its previous chunk)."""
    if row.request.sampling.logprobs is None:
        return None
    taken, row.logprobs = row.logprobs, []
    return taken

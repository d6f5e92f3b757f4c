"""The `hf` engine's batching state: one request's row, worker control messages, the running
batch with its merged KV cache, and sampling. Used by the worker thread of `serve/hf.py` only.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loramux.serve import kvcache
from loramux.serve.textstream import TextStream
from loramux.serve.types import GenerationChunk, GenerationRequest
from loramux.types import AdapterRef

if TYPE_CHECKING:
    import torch


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
    position: int = 0
    next_token: int = -1

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


def sample(logits: torch.Tensor, rows: list[Row]) -> list[int]:
    """Greedy for temperature 0, else temperature + top-p sampling with each row's generator."""
    import torch

    tokens: list[int] = logits.argmax(dim=-1).tolist()
    for i, seq in enumerate(rows):
        params = seq.request.sampling
        if params.temperature <= 0 or seq.generator is None:
            continue
        probs = torch.softmax(logits[i] / params.temperature, dim=-1)
        if params.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            keep = sorted_probs.cumsum(-1) - sorted_probs < params.top_p
            sorted_probs = sorted_probs * keep
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
        tokens[i] = int(torch.multinomial(probs.cpu(), 1, generator=seq.generator).item())
    return tokens

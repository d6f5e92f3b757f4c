"""Every hand-written fake of the test suite, in one place (no mock.patch anywhere).

- `FaultyEngine`: the product's echo `FakeEngine` (`loramux.serve.fake`) plus fault switches;
- `TinyEncoder`: a deterministic hashing encoder, no model;
- `KeywordRouter`: routes by route name found in the text, decides through `route_batch` only;
- `FakeRouter`: decides `route=text`, can hold its first batch, records its threads;
- `CountingEngine`: the echo engine counting adapter loads and unloads, with slow loads;
- `PoisonedSampler`: the hf engine's row sampler, poisoning one request's row of a batch.

A fake vLLM OpenAI server (a separate process) is `tests/serve/fake_vllm_server.py`. Real small
things that tests build (LoRA folders, routes, the real encoder) are in `tests/builders.py`.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from loramux.config import RouteSpec
from loramux.router.decision import RouteDecision, RouteTarget
from loramux.serve.fake import FakeEngine
from loramux.serve.types import FinishReason, GenerationChunk, GenerationRequest
from loramux.types import AdapterRef

if TYPE_CHECKING:
    from loramux.serve.hf_batch import Row


class FaultyEngine(FakeEngine):
    """The echo engine, plus one-shot faults and a record of cancelled generations.

    - `crash_after = n`: the next stream dies after n chunks, and the engine says it is no
      longer ready (as when the hf worker thread dies); a restart (`stop` + `start`) heals it.
    - `hang_after = n`: the next stream stops producing after n chunks, forever; the engine
      still says it is ready (a stuck forward pass).
    - `fail_starts = n`: the next n calls of `start` raise.
    - `start_delay_s`: `start` takes this long (a model load), so tests can watch a restart.
    """

    def __init__(
        self, *, token_delay_s: float = 0.0, start_delay_s: float = 0.0, context_length: int = 2048
    ) -> None:
        super().__init__(context_length=context_length, token_delay_s=token_delay_s)
        self.start_delay_s = start_delay_s
        self.crash_after: int | None = None
        self.hang_after: int | None = None
        self.fail_starts = 0
        self.starts = 0
        self.cancelled: list[str] = []
        """Request ids whose generation was closed or cancelled before its last chunk."""
        self.finished: list[str] = []
        self.requests: list[GenerationRequest] = []
        """Every request handed to `stream`, as the engine got it."""

    async def start(self) -> None:
        self.starts += 1
        if self.start_delay_s:
            await asyncio.sleep(self.start_delay_s)
        if self.fail_starts:
            self.fail_starts -= 1
            raise RuntimeError("injected start failure")
        await super().start()

    def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        self.requests.append(request)
        return self._faulty(request)

    async def _faulty(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        crash, hang = self.crash_after, self.hang_after
        produced = 0
        try:
            async for chunk in self._stream(request):
                if crash is not None and produced >= crash:
                    self.crash_after = None
                    self._ready = False
                    raise RuntimeError("injected engine crash")
                if hang is not None and produced >= hang:
                    self.hang_after = None
                    await asyncio.Event().wait()  # never set: hangs until cancelled
                produced += 1
                if chunk.finish_reason is not None:
                    self.finished.append(request.request_id)
                yield chunk
        except (GeneratorExit, asyncio.CancelledError):
            if request.request_id not in self.finished:  # closed after the end is no cancel
                self.cancelled.append(request.request_id)
            raise


class TinyEncoder:
    """Deterministic bag-of-words hashing encoder: no model, for unit tests of the plumbing."""

    def __init__(self, dim: int = 64, name: str = "tiny") -> None:
        self._dim = dim
        self._name = name
        self.calls = 0
        self.texts_encoded = 0

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def name(self) -> str:
        return self._name

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.calls += 1
        self.texts_encoded += len(texts)
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                h = int(hashlib.md5(word.encode()).hexdigest(), 16)
                out[i, h % self._dim] += 1.0 if (h >> 8) % 2 else -1.0
            out[i, -1] += 0.01
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class ClusterEncoder:
    """Synthetic embeddings with a known overlap: `"<class> <n>"` is a noisy copy of its class
    centre (classes not in `centres` get a random direction), so calibration can be checked
    against fresh samples from the very same distribution."""

    def __init__(self, classes: Sequence[str], dim: int = 16, noise: float = 0.5) -> None:
        rng = np.random.default_rng(7)
        self._centres = {c: rng.normal(size=dim) for c in classes}
        for c in classes:
            self._centres[c] /= np.linalg.norm(self._centres[c])
        self._dim = dim
        self._noise = noise

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def name(self) -> str:
        return "cluster"

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int(hashlib.md5(text.encode()).hexdigest(), 16) % 2**32
            noise = np.random.default_rng(seed).normal(size=self._dim)
            centre = self._centres.get(text.split(" ")[0])
            if centre is None:
                out[i] = noise
            else:
                out[i] = centre + self._noise * noise / np.sqrt(self._dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class KeywordRouter:
    """Routes a text to the first allowed route whose name it contains; records batch calls."""

    def __init__(self, names: Sequence[str]) -> None:
        self._routes = {n: RouteSpec(name=n, utterances=[f"about {n}"]) for n in names}
        self.calls: list[tuple[int, frozenset[str] | None]] = []

    @property
    def routes(self) -> dict[str, RouteSpec]:
        return dict(self._routes)

    def route(
        self, text: str, *, history: Sequence[str] = (), allowed: Iterable[str] | None = None
    ) -> RouteDecision:
        raise AssertionError("the dispatcher must decide through route_batch")

    def route_batch(
        self,
        texts: Sequence[str],
        *,
        histories: Sequence[Sequence[str]] | None = None,
        allowed: Iterable[str] | None = None,
    ) -> list[RouteDecision]:
        may = None if allowed is None else frozenset(allowed)
        self.calls.append((len(texts), may))
        out = []
        for text in texts:
            name = next((n for n in self._routes if n in text and (may is None or n in may)), None)
            if name is None:
                out.append(RouteDecision(RouteTarget.BASE, None, None, 0.1, 0.0, (), "no match"))
            else:
                out.append(RouteDecision(RouteTarget.ADAPTER, name, name, 0.9, 0.8, (), "match"))
        return out

    def add_routes(self, specs: Sequence[RouteSpec]) -> None:
        for spec in specs:
            self._routes[spec.name] = spec

    def remove_route(self, name: str) -> None:
        self._routes.pop(name, None)


class FakeRouter:
    """Decides `route=text` for every text; records each `route_batch` call.

    `hold` (when set) keeps the first call waiting until it is released, so that requests
    arriving meanwhile queue up. A text starting with "fail" makes its call raise.
    """

    def __init__(self, *, hold: bool = False) -> None:
        self.calls: list[tuple[list[str], list[tuple[str, ...]], frozenset[str] | None]] = []
        self.threads: set[int] = set()
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()

    @property
    def routes(self) -> dict[str, RouteSpec]:
        return {}

    def route(
        self, text: str, *, history: Sequence[str] = (), allowed: Iterable[str] | None = None
    ) -> RouteDecision:
        return self.route_batch([text], histories=[history], allowed=allowed)[0]

    def route_batch(
        self,
        texts: Sequence[str],
        *,
        histories: Sequence[Sequence[str]] | None = None,
        allowed: Iterable[str] | None = None,
    ) -> list[RouteDecision]:
        self.threads.add(threading.get_ident())
        may = None if allowed is None else frozenset(allowed)
        self.calls.append((list(texts), [tuple(h) for h in histories or ()], may))
        self.started.set()
        assert self.release.wait(10), "the test never released the first batch"
        if any(t.startswith("fail") for t in texts):
            raise ValueError(f"cannot route {texts[0]!r}")
        return [
            RouteDecision(
                RouteTarget.ADAPTER, text, text, 1.0, 1.0, (), "|".join(sorted(may or ["*"]))
            )
            for text in texts
        ]

    def add_routes(self, specs: Sequence[RouteSpec]) -> None:
        raise NotImplementedError

    def remove_route(self, name: str) -> None:
        raise NotImplementedError

    @property
    def sizes(self) -> list[int]:
        return [len(texts) for texts, _, _ in self.calls]


class CountingEngine(FakeEngine):
    """The echo engine, counting adapter loads and unloads; a load takes `load_delay_s`, and an
    engine holding more than `max_adapters` at once fails the test (what paging must prevent)."""

    def __init__(self, *, load_delay_s: float = 0.0, max_adapters: int | None = None) -> None:
        super().__init__()
        self.load_delay_s = load_delay_s
        self.max_adapters = max_adapters
        self.adds: list[str] = []
        self.removes: list[str] = []

    async def add_adapter(self, adapter: AdapterRef) -> None:
        self.adds.append(adapter.key)
        if self.load_delay_s:
            await asyncio.sleep(self.load_delay_s)
        await super().add_adapter(adapter)
        held = len(self.loaded_adapters())
        assert self.max_adapters is None or held <= self.max_adapters, f"{held} adapters loaded"

    async def remove_adapter(self, key: str) -> None:
        self.removes.append(key)
        await super().remove_adapter(key)


class PoisonedSampler:
    """The hf engine's sampler (`hf_batch.sample_row`), except for the row of one request id,
    from its `after`-th token on:

    - `mode="raise"`: its sampling raises, as `temperature: 1e-300` made it before the API
      normalised tiny temperatures (NaN probabilities);
    - `mode="bad_token"`: it picks a token id outside the vocabulary, so the next forward pass
      of the whole batch fails (an embedding lookup out of range);
    - `mode="forbidden"`: it picks the least likely token, which under a grammar is one the
      grammar forbids (its logit is -inf), so the row's matcher refuses it.
    """

    BAD_TOKEN = 10**9

    def __init__(self, request_id: str, *, mode: str = "raise", after: int = 2) -> None:
        self.request_id = request_id
        self.mode = mode
        self.after = after
        self.poisoned = 0
        """Times the poisoned row was sampled with the poison."""

    def __call__(self, logits: Any, row: Row, greedy_token: int) -> int:
        from loramux.serve.hf_batch import sample_row

        if row.request.request_id == self.request_id and row.generated >= self.after:
            self.poisoned += 1
            if self.mode == "raise":
                raise RuntimeError("probability tensor contains either `inf`, `nan` or < 0")
            if self.mode == "forbidden":
                return int(logits.argmin())
            return self.BAD_TOKEN
        return sample_row(logits, row, greedy_token)


class ScriptedEngine(FakeEngine):
    """Replies `reply` (whatever was asked), `piece` characters per chunk, and keeps every
    request it got (`requests`): for tests of what the gateway makes of a reply (tool calls)
    and of what it sends the engine (rendered tools)."""

    def __init__(self, reply: str = "hello there", *, piece: int = 3) -> None:
        super().__init__()
        self.reply = reply
        self.piece = piece
        self.requests: list[GenerationRequest] = []

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        self.requests.append(request)
        text = self.reply
        pieces = [text[i : i + self.piece] for i in range(0, len(text), self.piece)] or [""]
        for n, piece in enumerate(pieces, start=1):
            last = n == len(pieces)
            yield GenerationChunk(
                piece, FinishReason.STOP if last else None, prompt_tokens=7, completion_tokens=n
            )

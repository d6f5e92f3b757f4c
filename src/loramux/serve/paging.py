"""Adapter paging: registered is not loaded. A bounded, LRU set of adapters per engine.

`PagedEngine` is an `Engine` that wraps another one (the supervised hf, vllm, remote or fake
engine) and keeps at most `capacity` adapter versions loaded in it, as S-LoRA and LoRAX do:

- a request for a cold version loads it (from the `AdapterRef` it carries, after `verify`
  checked its files), evicting the least recently used idle one first;
- a version that a running request uses is never evicted (a lease per open stream), and neither
  is a pinned one (`set_pinned`: departments with an SLA);
- concurrent requests for the same cold version share one load (single flight, in a task of its
  own, so a client that goes away does not cancel the load others wait on);
- when every slot is held by running requests or pins, a cold request waits for one to free,
  in the order the loads asked, at most `wait_timeout_s`, then gets 503 `server_overloaded`;
- a version whose load failed (files vanished or changed) fails its requests at once with 503
  `adapter_unavailable` naming the version for `failure_ttl_s`, instead of retrying in a loop;
  the other adapters keep serving. `add_adapter` (a registration or repair) clears it.

`add_adapter` loads at once (a registration's trial load, pre-warming); `remove_adapter`
forgets a version (retired) and unloads it once no request uses it. `PagingStats` counts loads,
evictions, failures and load seconds for Prometheus; the first chunk of a request that paid a
cold load carries `adapter_load_s`, which the gateway sends as a response header.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field, replace

from loramux.errors import (
    AdapterConflictError,
    AdapterUnavailableError,
    LoramuxError,
    ServerOverloadedError,
)
from loramux.serve.types import GenerationChunk, GenerationRequest
from loramux.types import AdapterRef

logger = logging.getLogger(__name__)

LOAD_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds (seconds) of the load-time histogram."""


@dataclass
class PagingStats:
    """Counters since start, read by the Prometheus collector at scrape time."""

    loads: int = 0
    """Versions loaded into the engine (cold loads, pre-warming and registrations)."""
    evictions: int = 0
    """Versions unloaded to make room (not counting retired ones)."""
    load_failures: int = 0
    """Loads that failed (bad files, engine errors)."""
    hits: int = 0
    """Requests whose version was loaded already (`add_adapter` is no request)."""
    misses: int = 0
    """Requests that waited for a load (their own or one already under way)."""
    load_seconds_sum: float = 0.0
    load_buckets: list[int] = field(default_factory=lambda: [0] * len(LOAD_BUCKETS))
    """Loads per bucket of `LOAD_BUCKETS` (not cumulative; +Inf is `loads` minus their sum)."""

    def observe_load(self, seconds: float) -> None:
        self.loads += 1
        self.load_seconds_sum += seconds
        for i, bound in enumerate(LOAD_BUCKETS):
            if seconds <= bound:
                self.load_buckets[i] += 1
                break


class PagedEngine:
    """An `Engine` that pages adapter versions in and out of the engine it wraps."""

    def __init__(
        self,
        inner: object,
        *,
        capacity: int,
        verify: Callable[[AdapterRef], None] | None = None,
        wait_timeout_s: float = 30.0,
        failure_ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Wrap `inner`.

        Args:
            inner: the engine that holds the loaded adapters (an `Engine`).
            capacity: most versions loaded at once (`engine.max_loaded_adapters`).
            verify: checks a version's files before it is loaded (blocking; run in a thread);
                raises `AdapterError` when they are missing or changed.
            wait_timeout_s: longest wait of a cold request for a free slot.
            failure_ttl_s: how long a failed version fails its requests without a new try.
            clock: monotonic seconds (tests pass a fake).
        """
        from loramux.serve.engine import Engine

        assert isinstance(inner, Engine)
        self.inner: Engine = inner
        self.capacity = capacity
        self._verify = verify
        self._wait_timeout_s = wait_timeout_s
        self._failure_ttl_s = failure_ttl_s
        self._clock = clock
        self._loaded: OrderedDict[str, AdapterRef] = OrderedDict()
        """Loaded versions, least recently used first."""
        self._leases: dict[str, int] = {}
        self._wanted: dict[str, int] = {}
        """Requests waiting for a version's load: it is not evicted before they take a lease."""
        self._loading: dict[str, asyncio.Task[float]] = {}
        self._reserved = 0
        """Slots taken by loads under way."""
        self._pinned: set[str] = set()
        self._failed: dict[str, tuple[str, float]] = {}
        self._freed = asyncio.Condition()
        self._slot_queue: deque[object] = deque()
        """Loads waiting for a slot, in the order they asked."""
        self.stats = PagingStats()

    # -- Engine protocol ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def ready(self) -> bool:
        return self.inner.ready

    @property
    def context_length(self) -> int:
        return self.inner.context_length

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        for task in list(self._loading.values()):
            task.cancel()
        await self.inner.stop()
        self._loaded.clear()
        self._leases.clear()
        self._reserved = 0

    def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        if request.adapter is None:
            return self.inner.stream(request)
        return self._paged_stream(request, request.adapter)

    async def add_adapter(self, adapter: AdapterRef) -> None:
        """Load a version now (a registration's trial load, pre-warming); idempotent.

        Raises:
            AdapterError: its files are bad or the engine could not load it.
            ServerOverloadedError: every slot is held by running requests or pins.
        """
        self._failed.pop(adapter.key, None)
        await self._acquire(adapter, request=False)
        await self._release(adapter.key)

    async def remove_adapter(self, key: str) -> None:
        """Forget a version (retired): unpin it and unload it once no request uses it."""
        self._pinned.discard(key)
        self._failed.pop(key, None)
        if key in self._loaded:
            await self._unload(key)

    def loaded_adapters(self) -> list[str]:
        return list(self._loaded)

    # -- pins ----------------------------------------------------------------------------------

    @property
    def pinned(self) -> frozenset[str]:
        return frozenset(self._pinned)

    async def set_pinned(self, adapters: Iterable[AdapterRef]) -> None:
        """Pin exactly these versions (loading them now); every other version may be evicted.

        Raises:
            AdapterConflictError: the pins would take every slot (one must stay free for
                unpinned traffic); nothing is changed then.
        """
        refs = {ref.key: ref for ref in adapters}
        if len(refs) >= self.capacity:
            raise AdapterConflictError(
                f"pinning {len(refs)} adapter versions would take every one of the engine's "
                f"{self.capacity} adapter slots (engine.max_loaded_adapters); unpin one or "
                "raise engine.max_loaded_adapters"
            )
        self._pinned = set(refs)
        for key, ref in refs.items():
            if key in self._loaded:
                continue
            try:
                await self.add_adapter(ref)
            except LoramuxError as exc:
                logger.error("cannot pin %s: %s", key, exc.message)
        async with self._freed:
            self._freed.notify_all()

    # -- streams -------------------------------------------------------------------------------

    async def _paged_stream(
        self, request: GenerationRequest, adapter: AdapterRef
    ) -> AsyncIterator[GenerationChunk]:
        load_s = await self._acquire(adapter)
        try:
            first = True
            async for chunk in self.inner.stream(request):
                if first and load_s is not None:
                    chunk = replace(chunk, adapter_load_s=load_s)
                first = False
                yield chunk
        finally:
            await self._release(adapter.key)

    async def _acquire(self, adapter: AdapterRef, *, request: bool = True) -> float | None:
        """Take a lease on a loaded version, loading it first when it is cold.

        Args:
            adapter: the version.
            request: a request's lease, counted as a hit or a miss (not a registration's).

        Returns:
            The seconds this request waited for a load, or None when the version was warm.
        """
        key = adapter.key
        waited: float | None = None
        started = self._clock()
        while True:
            self._raise_if_failed(key)
            if key in self._loaded:
                self._loaded.move_to_end(key)
                self._leases[key] = self._leases.get(key, 0) + 1
                if waited is None and request:
                    self.stats.hits += 1
                return waited
            task = self._loading.get(key)
            if task is None:
                task = asyncio.create_task(self._load(adapter), name=f"load-adapter-{key}")
                self._loading[key] = task
            if waited is None and request:
                self.stats.misses += 1
            self._wanted[key] = self._wanted.get(key, 0) + 1
            try:
                await asyncio.shield(task)  # raises the load's error to every waiter
            finally:
                left = self._wanted.pop(key) - 1
                if left:
                    self._wanted[key] = left
            waited = self._clock() - started

    async def _release(self, key: str) -> None:
        left = self._leases.get(key, 0) - 1
        if left > 0:
            self._leases[key] = left
        else:
            self._leases.pop(key, None)
        async with self._freed:
            self._freed.notify_all()

    async def _load(self, adapter: AdapterRef) -> float:
        """Make room, verify the files, load: one task per cold version, shared by its waiters."""
        key = adapter.key
        try:
            await self._reserve_slot(key)
            try:
                started = self._clock()
                if self._verify is not None:
                    await asyncio.to_thread(self._verify, adapter)
                await self.inner.add_adapter(adapter)
                seconds = self._clock() - started
            finally:
                self._reserved -= 1
            self._loaded[key] = adapter
            self.stats.observe_load(seconds)
            logger.info("loaded adapter %s in %.0f ms", key, 1000 * seconds)
            return seconds
        except ServerOverloadedError:
            raise
        except LoramuxError as exc:
            self._fail(key, exc.message)
            raise self._failure(key) from None
        except Exception as exc:
            self._fail(key, f"{type(exc).__name__}: {exc}")
            raise self._failure(key) from None
        finally:
            self._loading.pop(key, None)
            async with self._freed:
                self._freed.notify_all()

    async def _reserve_slot(self, key: str) -> None:
        """Take a slot for `key`, evicting the least recently used idle version when all are
        taken, or waiting for one to free (raises `ServerOverloadedError` after the timeout).

        Loads take slots in the order they asked (a ticket queue): a load that arrives while
        others wait does not take a slot that just freed ahead of them."""
        deadline = self._clock() + self._wait_timeout_s
        ticket = object()
        self._slot_queue.append(ticket)
        try:
            async with self._freed:
                while True:
                    if self._slot_queue[0] is ticket:
                        if len(self._loaded) + self._reserved < self.capacity:
                            break
                        victim = self._victim()
                        if victim is not None:
                            await self._evict(victim)
                            continue
                    left = deadline - self._clock()
                    if left <= 0:
                        raise ServerOverloadedError(
                            f"all {self.capacity} adapter slots of the engine are held by running "
                            f"requests or pins, and {key} waited {self._wait_timeout_s:g} s for "
                            "one; retry, or raise engine.max_loaded_adapters",
                            retry_after_s=1,
                        )
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(left):
                            await self._freed.wait()
                self._reserved += 1
        finally:
            self._slot_queue.remove(ticket)
            async with self._freed:
                self._freed.notify_all()  # the next ticket may go now

    def _victim(self) -> str | None:
        """The least recently used version no request uses, waits for, or pins."""
        return next(
            (
                k
                for k in self._loaded
                if not self._leases.get(k) and not self._wanted.get(k) and k not in self._pinned
            ),
            None,
        )

    async def _evict(self, victim: str) -> None:
        self._loaded.pop(victim)
        self._reserved += 1  # the slot is ours while the victim unloads
        try:
            await self._unload_now(victim)
        finally:
            self._reserved -= 1
        self.stats.evictions += 1

    async def _unload(self, key: str) -> None:
        """Unload a version once no request holds it (retired versions)."""
        async with self._freed:
            while self._leases.get(key):
                await self._freed.wait()
            if self._loaded.pop(key, None) is not None:
                await self._unload_now(key)

    async def _unload_now(self, key: str) -> None:
        try:
            await self.inner.remove_adapter(key)
        except Exception:
            logger.exception("could not unload adapter %s", key)

    def _fail(self, key: str, why: str) -> None:
        self.stats.load_failures += 1
        self._failed[key] = (why, self._clock())
        logger.error("cannot load adapter %s: %s", key, why)

    def _raise_if_failed(self, key: str) -> None:
        failed = self._failed.get(key)
        if failed is None:
            return
        if self._clock() - failed[1] >= self._failure_ttl_s:
            del self._failed[key]  # try once more
            return
        raise self._failure(key)

    def _failure(self, key: str) -> AdapterUnavailableError:
        why, at = self._failed[key]
        retry = max(1, round(self._failure_ttl_s - (self._clock() - at)))
        return AdapterUnavailableError(
            f"adapter version {key} cannot be loaded: {why}. An admin must register its files "
            f"again; the next try is in {retry} s",
            retry_after_s=retry,
        )

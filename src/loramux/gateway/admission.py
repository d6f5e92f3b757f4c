"""Bounded admission in front of the engine: a fixed number of generation slots and a bounded
FIFO queue of requests waiting for one.

A request that finds every slot busy and the queue full, or that waits longer than the queue
timeout, is refused at once with HTTP 503 `server_overloaded` and `Retry-After`: under overload
clients see a fast, retryable refusal instead of latency that grows without bound. While the
server drains before stopping (`close`), new requests get 503 `shutting_down`; those already
admitted or queued run to the end.

`admitted_stream` runs one generation inside a slot and under the request timeout: past it the
generation is cancelled (the engine's stream is closed) and `RequestTimeoutError` (HTTP 504) is
raised, before the first chunk or between chunks.

`depth` (requests waiting) and `in_flight` (slots taken) are what a queue gauge reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from loramux.config import LimitsSettings
from loramux.errors import RequestTimeoutError, ServerOverloadedError, ShuttingDownError
from loramux.serve.interrupt import Interrupted, Interruptible
from loramux.serve.types import GenerationChunk

logger = logging.getLogger(__name__)


def in_flight_limit(limits: LimitsSettings, engine_batch: int) -> int:
    """`limits.max_in_flight`, or by default twice the engine's batch (at least 64).

    Found on the GPU: a fixed 64 in front of a vLLM engine with `max_num_seqs` 128 held every
    batch at half size, and throughput through the gateway at 0.65x of vLLM alone.
    """
    if limits.max_in_flight is None:
        return max(64, 2 * engine_batch)
    if limits.max_in_flight < engine_batch:
        logger.warning(
            "limits.max_in_flight is %d, under engine.max_batch_size %d: the engine's batches "
            "will never hold more than %d requests",
            limits.max_in_flight,
            engine_batch,
            limits.max_in_flight,
        )
    return limits.max_in_flight


class AdmissionQueue:
    """At most `max_in_flight` generations at once, at most `max_queued` waiting (FIFO)."""

    def __init__(
        self,
        *,
        max_in_flight: int,
        max_queued: int,
        queue_timeout_s: float,
        retry_after_s: int = 1,
    ) -> None:
        self.max_in_flight = max_in_flight
        self.max_queued = max_queued
        self.queue_timeout_s = queue_timeout_s
        self.retry_after_s = retry_after_s
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self.admitted = 0
        """Requests given a slot since start."""
        self.rejected = 0
        """Requests refused with 503 because the queue was full or they waited too long."""

    @classmethod
    def from_settings(cls, limits: LimitsSettings, engine_batch: int) -> AdmissionQueue:
        """The queue of a config's `limits`; `engine_batch` is `engine.max_batch_size`."""
        return cls(
            max_in_flight=in_flight_limit(limits, engine_batch),
            max_queued=limits.max_queued,
            queue_timeout_s=limits.queue_timeout_s,
            retry_after_s=limits.retry_after_s,
        )

    @property
    def in_flight(self) -> int:
        """Generation slots taken."""
        return self._in_flight

    @property
    def depth(self) -> int:
        """Requests waiting for a slot."""
        return sum(1 for f in self._waiters if not f.done())

    @property
    def closed(self) -> bool:
        """True once the server drains: new requests are refused."""
        return self._closed

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a generation slot for the body of the `async with`.

        Raises:
            ServerOverloadedError: the queue is full, or no slot came free in time.
            ShuttingDownError: the server is draining.
        """
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    async def acquire(self) -> None:
        """Take a slot, waiting in line when all are busy (raises as `slot`)."""
        if self._closed:
            raise ShuttingDownError(
                "the server is shutting down; retry on another replica or in a moment",
                retry_after_s=self.retry_after_s,
            )
        if self._in_flight < self.max_in_flight and not self.depth:
            self._in_flight += 1
            self.admitted += 1
            return
        if self.depth >= self.max_queued:
            self.rejected += 1
            raise ServerOverloadedError(
                f"the server is at capacity ({self._in_flight} generations running, "
                f"{self.depth} waiting); retry after {self.retry_after_s} s",
                retry_after_s=self.retry_after_s,
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as we gave up: pass it on
            else:
                waiter.cancel()
            if isinstance(exc, TimeoutError):
                self.rejected += 1
                raise ServerOverloadedError(
                    f"no generation slot came free in {time.monotonic() - started:.0f} s; the "
                    f"server is overloaded, retry after {self.retry_after_s} s",
                    retry_after_s=self.retry_after_s,
                ) from None
            raise
        self.admitted += 1

    def release(self) -> None:
        """Give a slot back: to the first request still waiting, else to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._in_flight -= 1

    def close(self) -> None:
        """Refuse new requests from now on (queued and running ones go on)."""
        self._closed = True

    async def drain(self, timeout_s: float) -> bool:
        """Close, then wait until nothing runs or waits.

        Returns:
            True when everything finished within `timeout_s`.
        """
        self.close()
        deadline = time.monotonic() + timeout_s
        while self._in_flight or self.depth:
            if time.monotonic() >= deadline:
                logger.warning(
                    "drain: %d generations still running after %.0f s; stopping anyway",
                    self._in_flight,
                    timeout_s,
                )
                return False
            await asyncio.sleep(0.05)
        return True


async def admitted_stream(
    admission: AdmissionQueue,
    start: Callable[[], AsyncIterator[GenerationChunk]],
    *,
    timeout_s: float,
) -> AsyncIterator[GenerationChunk]:
    """Wait for a slot, then relay `start()`'s chunks until the last one or the timeout.

    Closing this iterator early (a client that went away) closes the engine's stream, which
    cancels the generation, and frees the slot.

    Raises:
        ServerOverloadedError, ShuttingDownError: from `AdmissionQueue.acquire`.
        RequestTimeoutError: the generation took longer than `timeout_s`.
    """
    async with admission.slot():
        guard = Interruptible()
        timer = asyncio.get_running_loop().call_later(
            timeout_s,
            guard.interrupt,
            f"the generation took longer than this server's request timeout of {timeout_s:g} s "
            "and was cancelled; ask for fewer tokens (max_tokens) or retry",
        )
        chunks = start()
        try:
            while True:
                try:
                    with guard:
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except Interrupted as exc:
                    raise RequestTimeoutError(exc.reason) from None
                yield chunk
                if chunk.finish_reason is not None:
                    return
        finally:
            timer.cancel()
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

"""Bounded admission in front of the engine: a fixed number of generation slots and a bounded
queue of requests waiting for one, shared fairly between tenants.

With `limits.fair_share` (the default) each tenant (a department, or a key without one) waits in
its own line, and a free slot goes to the waiting tenant that was served the fewest tokens,
weighted by its keys' `weight` (the Virtual Token Counter, `loramux.gateway.fairshare`). When the
queue is full, a newcomer takes the place of the newest waiter of the tenant that holds the most
of it (that waiter gets the 503), so a tenant that floods the server waits on, and is refused
for, its own requests while a light tenant keeps its latency. Without fair share: one FIFO line.

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
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import NoReturn

from loramux.config import LimitsSettings
from loramux.errors import RequestTimeoutError, ServerOverloadedError, ShuttingDownError
from loramux.gateway.fairshare import TenantQueues
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


@dataclass
class Ticket:
    """One request's claim on admission: who it is for, to charge what it is served."""

    tenant: str = ""
    """The department (or key) the request counts for; "" for everyone when fair share is off."""
    weight: float = 1.0
    """The key's weight: its tokens count 1/weight on the tenant's counter."""
    cost: int = 0
    """Tokens charged when it gets its slot (an estimate of its prompt)."""
    admitted: bool = False
    """Set when it got a slot (its prompt reached the engine)."""


class AdmissionQueue:
    """At most `max_in_flight` generations at once, at most `max_queued` waiting.

    With `fair_share` each tenant waits in its own line and a free slot goes to the waiting
    tenant served the fewest weighted tokens (`loramux.gateway.fairshare`); a full queue makes
    room for a tenant by refusing the newest waiter of the tenant that holds the most of it, and
    `max_queued_per_tenant` bounds each line. Without it, one FIFO line for everyone.
    """

    def __init__(
        self,
        *,
        max_in_flight: int,
        max_queued: int,
        queue_timeout_s: float,
        retry_after_s: int = 1,
        fair_share: bool = False,
        max_queued_per_tenant: int | None = None,
    ) -> None:
        self.max_in_flight = max_in_flight
        self.max_queued = max_queued
        self.queue_timeout_s = queue_timeout_s
        self.retry_after_s = retry_after_s
        self.fair_share = fair_share
        self.max_queued_per_tenant = max_queued_per_tenant
        self._in_flight = 0
        self._running: Counter[str] = Counter()
        self._lines: TenantQueues[asyncio.Future[None]] = TenantQueues()
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
            fair_share=limits.fair_share,
            max_queued_per_tenant=limits.max_queued_per_tenant,
        )

    @property
    def in_flight(self) -> int:
        """Generation slots taken."""
        return self._in_flight

    @property
    def depth(self) -> int:
        """Requests waiting for a slot."""
        return len(self._lines)

    @property
    def closed(self) -> bool:
        """True once the server drains: new requests are refused."""
        return self._closed

    def counter(self, tenant: str) -> float:
        """A tenant's virtual token counter (weighted tokens served)."""
        return self._lines.vtc.counter(tenant)

    @asynccontextmanager
    async def slot(self, ticket: Ticket | None = None) -> AsyncIterator[Ticket]:
        """Hold a generation slot for the body of the `async with`.

        Raises:
            ServerOverloadedError: the queue is full, or no slot came free in time.
            ShuttingDownError: the server is draining.
        """
        ticket = await self.acquire(ticket)
        try:
            yield ticket
        finally:
            self.release(ticket)

    def charge(self, ticket: Ticket, tokens: int) -> None:
        """Count tokens served to the ticket's tenant (weighted by its key)."""
        self._lines.vtc.charge(self._tenant(ticket), tokens, ticket.weight)

    def _tenant(self, ticket: Ticket) -> str:
        return ticket.tenant if self.fair_share else ""

    async def acquire(self, ticket: Ticket | None = None) -> Ticket:
        """Take a slot, waiting in line when all are busy (raises as `slot`)."""
        ticket = ticket or Ticket()
        if self._closed:
            raise ShuttingDownError(
                "the server is shutting down; retry on another replica or in a moment",
                retry_after_s=self.retry_after_s,
            )
        tenant = self._tenant(ticket)
        if not self._running[tenant] and not self._lines.waiting(tenant):
            self._lines.vtc.lift(tenant, self._active())
        if self._in_flight < self.max_in_flight and not self.depth:
            self._in_flight += 1
            self._start(ticket)
            return ticket
        self._make_room(ticket)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lines.push(tenant, waiter, ticket.weight)
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._running[tenant] += 1
                self.release(ticket)  # the slot was handed over just as we gave up: pass it on
            else:
                self._lines.remove(tenant, waiter)
                waiter.cancel()
            if isinstance(exc, TimeoutError):
                self.rejected += 1
                raise ServerOverloadedError(
                    f"no generation slot came free in {time.monotonic() - started:.0f} s; the "
                    f"server is overloaded, retry after {self.retry_after_s} s",
                    retry_after_s=self.retry_after_s,
                ) from None
            raise
        self._start(ticket)
        return ticket

    def _active(self) -> list[str]:
        return [t for t, n in self._running.items() if n] + self._lines.tenants()

    def _start(self, ticket: Ticket) -> None:
        """Count a slot taken (`_in_flight` counts it already: a slot handed over by
        `release` never goes back to the pool)."""
        self._running[self._tenant(ticket)] += 1
        ticket.admitted = True
        self.admitted += 1
        self.charge(ticket, ticket.cost)

    def _make_room(self, ticket: Ticket) -> None:
        """Raise ServerOverloadedError unless the ticket may wait (see the class docstring)."""
        tenant = self._tenant(ticket)
        own = self._lines.waiting(tenant)
        per_tenant = self.max_queued_per_tenant
        if self.fair_share and per_tenant is not None and own >= per_tenant:
            self._refuse(f"this API key's department has {own} requests waiting already")
        if self.depth < self.max_queued:
            return
        crowded = self._lines.crowding(tenant, ticket.weight) if self.fair_share else None
        if crowded is None:
            self._refuse(f"{self._in_flight} generations running, {self.depth} waiting")
        _, pushed_out = crowded
        self.rejected += 1
        pushed_out.set_exception(self._overloaded("its department holds most of the queue"))

    def _overloaded(self, why: str) -> ServerOverloadedError:
        return ServerOverloadedError(
            f"the server is at capacity ({why}); retry after {self.retry_after_s} s",
            retry_after_s=self.retry_after_s,
        )

    def _refuse(self, why: str) -> NoReturn:
        self.rejected += 1
        raise self._overloaded(why)

    def release(self, ticket: Ticket | None = None) -> None:
        """Give a slot back: to the next waiter (lowest counter first), else to the pool."""
        tenant = self._tenant(ticket) if ticket is not None else ""
        if self._running[tenant] > 0:
            self._running[tenant] -= 1
        if not self._running[tenant]:
            del self._running[tenant]
        while (picked := self._lines.pop_next()) is not None:
            _, waiter = picked
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
    ticket: Ticket | None = None,
) -> AsyncIterator[GenerationChunk]:
    """Wait for a slot, then relay `start()`'s chunks until the last one or the timeout.

    Closing this iterator early (a client that went away) closes the engine's stream, which
    cancels the generation, and frees the slot. The tokens of each chunk are charged to the
    ticket's tenant as they pass (`AdmissionQueue.charge`).

    Raises:
        ServerOverloadedError, ShuttingDownError: from `AdmissionQueue.acquire`.
        RequestTimeoutError: the generation took longer than `timeout_s`.
    """
    async with admission.slot(ticket) as taken:
        guard = Interruptible()
        timer = asyncio.get_running_loop().call_later(
            timeout_s,
            guard.interrupt,
            f"the generation took longer than this server's request timeout of {timeout_s:g} s "
            "and was cancelled; ask for fewer tokens (max_tokens) or retry",
        )
        chunks = start()
        served = charged = 0
        try:
            while True:
                try:
                    with guard:
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except Interrupted as exc:
                    raise RequestTimeoutError(exc.reason) from None
                served = max(chunk.completion_tokens, served + (1 if chunk.text else 0))
                admission.charge(taken, served - charged)
                charged = served
                yield chunk
                if chunk.finish_reason is not None:
                    return
        finally:
            timer.cancel()
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

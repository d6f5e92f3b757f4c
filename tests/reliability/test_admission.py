"""The admission queue on its own: slots, FIFO waiting, refusals, hand-over and drain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from loramux.errors import RequestTimeoutError, ServerOverloadedError, ShuttingDownError
from loramux.gateway.admission import AdmissionQueue, admitted_stream
from loramux.serve.types import FinishReason, GenerationChunk


def queue(in_flight: int = 1, queued: int = 2, timeout: float = 5.0) -> AdmissionQueue:
    return AdmissionQueue(
        max_in_flight=in_flight, max_queued=queued, queue_timeout_s=timeout, retry_after_s=3
    )


async def test_waiters_get_slots_in_arrival_order() -> None:
    q = queue(in_flight=1, queued=3)
    order: list[int] = []
    gate = asyncio.Event()

    async def job(i: int) -> None:
        async with q.slot():
            order.append(i)
            await gate.wait()

    tasks = [asyncio.create_task(job(i)) for i in range(4)]
    await asyncio.sleep(0.01)
    assert (q.in_flight, q.depth) == (1, 3)
    gate.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3]
    assert (q.in_flight, q.depth) == (0, 0)
    assert q.admitted == 4


async def test_a_full_queue_refuses_at_once_with_retry_after() -> None:
    q = queue(in_flight=1, queued=1)
    await q.acquire()
    waiting = asyncio.create_task(q.acquire())
    await asyncio.sleep(0)
    with pytest.raises(ServerOverloadedError, match="at capacity") as refused:
        await q.acquire()
    assert refused.value.status == 503
    assert refused.value.code == "server_overloaded"
    assert refused.value.retry_after_s == 3
    q.release()
    await waiting  # the queued request got the freed slot
    assert (q.in_flight, q.depth, q.rejected) == (1, 0, 1)


async def test_waiting_too_long_is_a_503_and_frees_the_place() -> None:
    q = queue(in_flight=1, queued=5, timeout=0.05)
    await q.acquire()
    with pytest.raises(ServerOverloadedError, match="no generation slot came free"):
        await q.acquire()
    assert q.depth == 0
    q.release()
    assert q.in_flight == 0


async def test_a_cancelled_waiter_does_not_take_a_slot() -> None:
    q = queue(in_flight=1, queued=5)
    await q.acquire()
    gone = asyncio.create_task(q.acquire())
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    q.release()
    assert (q.in_flight, q.depth) == (0, 0)


async def test_drain_refuses_new_requests_and_waits_for_running_ones() -> None:
    q = queue(in_flight=2, queued=2)
    await q.acquire()
    drained = asyncio.create_task(q.drain(5))
    await asyncio.sleep(0.01)
    assert q.closed
    with pytest.raises(ShuttingDownError):
        await q.acquire()
    assert not drained.done()
    q.release()
    assert await drained


async def test_drain_gives_up_after_its_timeout() -> None:
    q = queue()
    await q.acquire()
    assert not await q.drain(0.05)


async def _words(n: int, delay: float) -> AsyncIterator[GenerationChunk]:
    for i in range(n):
        await asyncio.sleep(delay)
        yield GenerationChunk(f"w{i} ", FinishReason.STOP if i == n - 1 else None)


async def test_a_slow_generation_times_out_and_frees_its_slot() -> None:
    q = queue()
    chunks = admitted_stream(q, lambda: _words(100, 0.02), timeout_s=0.1)
    got: list[GenerationChunk] = []

    async def drain() -> None:
        async for chunk in chunks:
            got.append(chunk)

    with pytest.raises(RequestTimeoutError, match="request timeout of 0.1 s"):
        await drain()
    assert 0 < len(got) < 100
    assert q.in_flight == 0


async def test_closing_the_stream_early_frees_its_slot() -> None:
    q = queue()
    chunks = admitted_stream(q, lambda: _words(100, 0), timeout_s=10)
    await anext(chunks)
    assert q.in_flight == 1
    await chunks.aclose()  # type: ignore[attr-defined]
    assert q.in_flight == 0


def test_in_flight_default_follows_the_engine_batch(caplog: pytest.LogCaptureFixture) -> None:
    from loramux.config import LimitsSettings
    from loramux.gateway.admission import in_flight_limit

    assert in_flight_limit(LimitsSettings(), 16) == 64  # the hf default: at least 64
    assert in_flight_limit(LimitsSettings(), 128) == 256  # vLLM's 128 slots stay full
    assert AdmissionQueue.from_settings(LimitsSettings(), 128).max_in_flight == 256
    with caplog.at_level("WARNING", logger="loramux.gateway.admission"):
        assert in_flight_limit(LimitsSettings(max_in_flight=300), 128) == 300
        assert not caplog.records
        assert in_flight_limit(LimitsSettings(max_in_flight=64), 128) == 64
    assert "under engine.max_batch_size 128" in caplog.text

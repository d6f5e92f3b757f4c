"""`Interruptible`: what breaks a stream's wait from outside, and what it leaves alone."""

from __future__ import annotations

import asyncio

import pytest

from loramux.serve.interrupt import Interrupted, Interruptible


async def test_an_interrupt_breaks_the_wait_in_progress() -> None:
    guard = Interruptible()

    async def waiter() -> None:
        with guard:
            await asyncio.Event().wait()

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    assert guard.waiting
    guard.interrupt("the engine died")
    with pytest.raises(Interrupted, match="the engine died"):
        await task
    assert task.cancelling() == 0  # its own cancellation was taken back


async def test_an_interrupt_between_waits_breaks_the_next_one() -> None:
    guard = Interruptible()
    guard.interrupt("too late")
    guard.interrupt("ignored: the first reason wins")
    with pytest.raises(Interrupted, match="too late"), guard:
        await asyncio.sleep(0)


async def test_a_cancellation_from_elsewhere_still_cancels() -> None:
    guard = Interruptible()

    async def waiter() -> None:
        with guard:
            await asyncio.Event().wait()

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    task.cancel()  # the client left
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_both_at_once_still_cancels() -> None:
    guard = Interruptible()

    async def waiter() -> None:
        with guard:
            await asyncio.Event().wait()

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    task.cancel()
    guard.interrupt("timeout")
    with pytest.raises(asyncio.CancelledError):
        await task

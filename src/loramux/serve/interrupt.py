"""Interrupt a task that waits on an engine stream, from a timer or from another task.

`asyncio.timeout` can do this too, but it arms and disarms a timer around every `await`, and a
stream awaits once per token. An `Interruptible` belongs to one stream: `with it: await ...` is
one wait; `it.interrupt(reason)`, called from anywhere on the event loop, makes the wait in
progress (or the next one) raise `Interrupted(reason)`. It cancels the waiting task and then
takes back its own cancellation (`Task.uncancel`), as `asyncio.timeout` does, so a cancellation
that came from elsewhere at the same time (a client that left) still propagates as
`CancelledError`.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any


class Interrupted(Exception):
    """A wait was interrupted; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Interruptible:
    """The waits of one stream, which another party may interrupt.

    `with guard: chunk = await anext(chunks)` is one wait (a plain context manager: a stream
    pays for no extra coroutine per token).
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        """Why it was interrupted; None while it was not."""
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = 0

    @property
    def waiting(self) -> bool:
        """True while a wait is in progress."""
        return self._task is not None

    def __enter__(self) -> None:
        if self.reason is not None:
            raise Interrupted(self.reason)
        task = asyncio.current_task()
        assert task is not None, "waits happen in a task"
        self._task, self._cancelling = task, task.cancelling()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if (
            exc_type is asyncio.CancelledError
            and self.reason is not None
            and task is not None
            and task.uncancel() <= self._cancelling
        ):
            raise Interrupted(self.reason) from None

    def interrupt(self, reason: str) -> None:
        """Make the current or next wait raise `Interrupted(reason)`; the first reason wins."""
        if self.reason is not None:
            return
        self.reason = reason
        if self._task is not None:
            self._task.cancel()

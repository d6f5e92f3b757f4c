"""Batches concurrent routing decisions into one encoder pass each, without waiting for more.

Why: every `model="auto"` request needs a decision before the engine can start on it, so the
router must decide at least as many requests per second as the engine serves. One decision is one
MiniLM forward pass (about 4 ms on 2 CPU cores, 250 /s one at a time); `route_batch` encodes many
texts in one pass (about 670 /s on the same cores, far more on a GPU). `RouteBatcher` turns
concurrent `route()` calls into `route_batch` calls.

Opportunistic, with no added wait: an idle batcher decides a lone request at once (a batch of one).
Requests that arrive while a batch is being decided queue up and go together in the next batch, up
to `max_batch`. Requests of one batch may carry different `allowed` sets (different API keys): they
are grouped by set and each group is one `route_batch` call, all groups of a batch in one hop to a
worker thread. An exception from `route_batch` fails that group's requests only; a caller that is
cancelled while it waits is skipped, and the batcher carries on.

A batched decision is the same function as a single one (`SemanticRouter.route` is `route_batch`
of one): the only difference is padding in the encoder batch, which may move embeddings in their
last float digits.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from loramux.router.base import Router
from loramux.router.decision import RouteDecision

logger = logging.getLogger(__name__)


@dataclass
class BatchStats:
    """What the batcher has done since it was built (for metrics and benchmarks)."""

    decisions: int = 0
    """Requests decided (including those whose caller had gone)."""
    batches: int = 0
    """Batches decided, one worker-thread hop each."""
    calls: int = 0
    """`route_batch` calls: one per distinct `allowed` set in a batch."""
    failed: int = 0
    """Requests whose group's `route_batch` raised."""
    largest: int = 0
    """Most requests in one batch."""

    @property
    def mean_batch(self) -> float:
        """Requests per batch on average (0 before the first batch)."""
        return (self.decisions + self.failed) / self.batches if self.batches else 0.0


@dataclass(eq=False)
class _Pending:
    text: str
    history: tuple[str, ...]
    allowed: frozenset[str] | None
    future: asyncio.Future[RouteDecision]


_Group = tuple[frozenset[str] | None, list[_Pending]]


class RouteBatcher:
    """Decides concurrent requests with as few `route_batch` calls as it can; see the module.

    Args:
        router: the router that decides.
        max_batch: most requests in one batch.
    """

    def __init__(self, router: Router, *, max_batch: int = 64) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.router = router
        self.max_batch = max_batch
        self.stats = BatchStats()
        self._queue: deque[_Pending] = deque()
        self._task: asyncio.Task[None] | None = None

    async def route(
        self, text: str, *, history: Sequence[str] = (), allowed: Iterable[str] | None = None
    ) -> RouteDecision:
        """Decide for one request, in a batch with whatever else is waiting; see `Router.route`.

        Raises:
            Exception: whatever the router's `route_batch` raised for this request's group.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[RouteDecision] = loop.create_future()
        may = None if allowed is None else frozenset(allowed)
        self._queue.append(_Pending(text, tuple(history), may, future))
        if self._task is None:
            self._task = loop.create_task(self._drain(), name="route-batcher")
        return await future

    async def _drain(self) -> None:
        """Decide queued requests batch after batch until the queue is empty."""
        batch: list[_Pending] = []
        try:
            while self._queue:
                batch = []
                while self._queue and len(batch) < self.max_batch:
                    pending = self._queue.popleft()
                    if not pending.future.done():  # its caller was cancelled
                        batch.append(pending)
                if batch:
                    await self._decide(batch)
        except BaseException:
            for pending in (*batch, *self._queue):
                pending.future.cancel()
            self._queue.clear()
            raise
        finally:
            self._task = None

    async def _decide(self, batch: list[_Pending]) -> None:
        groups: dict[frozenset[str] | None, list[_Pending]] = {}
        for pending in batch:
            groups.setdefault(pending.allowed, []).append(pending)
        todo = list(groups.items())
        results = await asyncio.to_thread(self._run, todo)
        stats = self.stats
        stats.batches += 1
        stats.calls += len(todo)
        stats.largest = max(stats.largest, len(batch))
        for (_, members), result in zip(todo, results, strict=True):
            if isinstance(result, BaseException):
                stats.failed += len(members)
                for pending in members:
                    if not pending.future.done():
                        pending.future.set_exception(result)
                continue
            stats.decisions += len(members)
            for pending, decision in zip(members, result, strict=True):
                if not pending.future.done():
                    pending.future.set_result(decision)

    def _run(self, groups: list[_Group]) -> list[list[RouteDecision] | Exception]:
        """Worker thread: one `route_batch` call per group; a group's error is its result."""
        out: list[list[RouteDecision] | Exception] = []
        for allowed, members in groups:
            try:
                decisions = self.router.route_batch(
                    [p.text for p in members],
                    histories=[p.history for p in members],
                    allowed=allowed,
                )
                if len(decisions) != len(members):
                    raise RuntimeError(
                        f"the router returned {len(decisions)} decisions for {len(members)} "
                        "requests"
                    )
                out.append(decisions)
            except Exception as exc:  # fails this group's requests only
                logger.warning("router: a batch of %d requests failed: %s", len(members), exc)
                out.append(exc)
        return out

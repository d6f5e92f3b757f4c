"""`RouteBatcher`: concurrent decisions coalesce into few `route_batch` calls, each caller gets
its own decision, groups by `allowed` set fail alone, and batched decisions equal single ones."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from loramux.router.batcher import RouteBatcher
from loramux.router.decision import RouteDecision, RouteTarget
from tests.fakes import FakeRouter
from tests.router.conftest import DEMO_TEST


async def _hold_first(router: FakeRouter, batcher: RouteBatcher) -> asyncio.Task[RouteDecision]:
    """Start one request and wait until its batch is in `route_batch` (held there)."""
    first = asyncio.create_task(batcher.route("first"))
    assert await asyncio.to_thread(router.started.wait, 10)
    return first


async def test_lone_request_on_an_idle_batcher_is_decided_at_once_as_a_batch_of_one() -> None:
    router = FakeRouter()
    batcher = RouteBatcher(router)
    decision = await asyncio.wait_for(batcher.route("hello", history=["earlier"]), 5)
    assert decision.route == "hello"
    assert router.calls == [(["hello"], [("earlier",)], None)]
    assert (batcher.stats.batches, batcher.stats.decisions, batcher.stats.largest) == (1, 1, 1)
    assert threading.get_ident() not in router.threads  # decided in a worker thread


async def test_requests_arriving_during_a_batch_go_together_in_the_next() -> None:
    router = FakeRouter(hold=True)
    batcher = RouteBatcher(router)
    first = await _hold_first(router, batcher)
    texts = [f"q{i}" for i in range(20)]
    rest = [asyncio.create_task(batcher.route(t, history=[f"h{t}"])) for t in texts]
    await asyncio.sleep(0.05)
    assert len(router.calls) == 1  # the others wait for the first batch
    router.release.set()
    decisions = await asyncio.wait_for(asyncio.gather(*rest), 5)
    assert [d.route for d in decisions] == texts  # each caller gets its own decision
    assert (await first).route == "first"
    assert router.sizes == [1, 20]
    assert router.calls[1][1] == [(f"h{t}",) for t in texts]  # histories stay with their text
    stats = batcher.stats
    assert (stats.batches, stats.calls, stats.decisions, stats.largest) == (2, 2, 21, 20)
    assert stats.mean_batch == pytest.approx(10.5)


async def test_max_batch_splits_the_queue_into_batches_in_arrival_order() -> None:
    router = FakeRouter(hold=True)
    batcher = RouteBatcher(router, max_batch=4)
    first = await _hold_first(router, batcher)
    texts = [f"q{i}" for i in range(10)]
    rest = [asyncio.create_task(batcher.route(t)) for t in texts]
    await asyncio.sleep(0.05)
    router.release.set()
    decisions = await asyncio.wait_for(asyncio.gather(first, *rest), 5)
    assert [d.route for d in decisions] == ["first", *texts]
    assert router.sizes == [1, 4, 4, 2]
    assert [c[0] for c in router.calls[1:]] == [texts[:4], texts[4:8], texts[8:]]
    assert batcher.stats.largest == 4


async def test_different_allowed_sets_are_decided_in_separate_calls_of_one_batch() -> None:
    router = FakeRouter(hold=True)
    batcher = RouteBatcher(router)
    first = await _hold_first(router, batcher)
    asks: list[tuple[str, Iterable[str] | None]] = [
        ("a1", {"hr", "it"}),
        ("b1", ["it"]),
        ("a2", ("it", "hr")),
        ("c1", None),
        ("b2", {"it"}),
    ]
    rest = [asyncio.create_task(batcher.route(t, allowed=a)) for t, a in asks]
    await asyncio.sleep(0.05)
    router.release.set()
    decisions = await asyncio.wait_for(asyncio.gather(*rest), 5)
    await first
    assert [(d.route, d.reason) for d in decisions] == [
        ("a1", "hr|it"),
        ("b1", "it"),
        ("a2", "hr|it"),
        ("c1", "*"),
        ("b2", "it"),
    ]
    groups = {may: texts for texts, _, may in router.calls[1:]}
    assert groups == {
        frozenset({"hr", "it"}): ["a1", "a2"],
        frozenset({"it"}): ["b1", "b2"],
        None: ["c1"],
    }
    assert (batcher.stats.batches, batcher.stats.calls) == (2, 4)


async def test_an_error_fails_only_the_group_whose_call_raised() -> None:
    router = FakeRouter(hold=True)
    batcher = RouteBatcher(router)
    first = await _hold_first(router, batcher)
    bad = [asyncio.create_task(batcher.route(t, allowed={"x"})) for t in ("fail-1", "ok-x")]
    good = [asyncio.create_task(batcher.route(t, allowed={"y"})) for t in ("ok-1", "ok-2")]
    await asyncio.sleep(0.05)
    router.release.set()
    results = await asyncio.wait_for(asyncio.gather(*bad, return_exceptions=True), 5)
    assert [type(r) for r in results] == [ValueError, ValueError]
    assert results[0] is results[1]  # the same exception for the whole group
    assert "fail-1" in str(results[0])
    assert [(await g).route for g in good] == ["ok-1", "ok-2"]
    await first
    assert batcher.stats.failed == 2
    assert (await batcher.route("after")).route == "after"  # the batcher still works


async def test_a_cancelled_waiter_does_not_break_the_batcher() -> None:
    router = FakeRouter(hold=True)
    batcher = RouteBatcher(router)
    first = await _hold_first(router, batcher)
    gone_early = asyncio.create_task(batcher.route("gone-early"))
    in_batch = asyncio.create_task(batcher.route("stays"))
    await asyncio.sleep(0.05)
    gone_early.cancel()
    first.cancel()  # its batch is in the worker thread already
    router.release.set()
    assert (await asyncio.wait_for(in_batch, 5)).route == "stays"
    assert first.cancelled()
    assert gone_early.cancelled()
    assert [c[0] for c in router.calls] == [["first"], ["stays"]]  # "gone-early" was skipped
    later = await asyncio.wait_for(
        asyncio.gather(batcher.route("later-1"), batcher.route("later-2")), 5
    )
    assert [d.route for d in later] == ["later-1", "later-2"]


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        RouteBatcher(FakeRouter(), max_batch=0)


# -- the real router -------------------------------------------------------------------------


async def test_batched_decisions_equal_single_decisions_of_the_real_router(demo_fit: Any) -> None:
    from loramux.router.fit.data import load_labelled

    router = demo_fit.router
    items = load_labelled(DEMO_TEST)
    texts = [item.text for item in items[::10]][:18] + ["Tell me a joke.", "Can it be extended?"]
    histories = [()] * 19 + [("How long is the probation period for new starters?",)]
    batcher = RouteBatcher(router)
    calls: list[int] = []
    route_batch = router.route_batch

    def counting(texts: Sequence[str], **kwargs: Any) -> list[RouteDecision]:
        calls.append(len(texts))
        return route_batch(texts, **kwargs)

    router.route_batch = counting
    try:
        batched = await asyncio.gather(
            *(batcher.route(t, history=h) for t, h in zip(texts, histories, strict=True))
        )
    finally:
        del router.route_batch
    assert sum(calls) == len(texts)
    assert len(calls) < len(texts)
    single = [router.route(t, history=h) for t, h in zip(texts, histories, strict=True)]
    assert {d.target for d in single} >= {RouteTarget.ADAPTER, RouteTarget.BASE}
    assert batched[-1].route == "hr"  # the follow-up was routed with its history
    for got, want in zip(batched, single, strict=True):
        assert (got.target, got.route, got.adapter) == (want.target, want.route, want.adapter)
        assert got.score == pytest.approx(want.score, abs=1e-4)
        assert got.margin == pytest.approx(want.margin, abs=1e-4)

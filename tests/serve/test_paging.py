"""Adapter paging (`serve.paging.PagedEngine`) over a counting fake engine: an LRU of loaded
versions that never evicts one in use or pinned, loads a cold version once however many
requests wait for it, and fails a version with bad files fast, without retrying in a loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loramux.errors import (
    AdapterConflictError,
    AdapterError,
    AdapterUnavailableError,
    ServerOverloadedError,
)
from loramux.serve.paging import PagedEngine
from loramux.serve.types import GenerationChunk, GenerationRequest, SamplingParams
from loramux.types import AdapterRef, ChatMessage
from tests.fakes import CountingEngine


def ref(name: str) -> AdapterRef:
    return AdapterRef(f"{name}@1", Path(f"/adapters/{name}"))


def request(adapter: AdapterRef | None, text: str = "hello there") -> GenerationRequest:
    return GenerationRequest(
        request_id=f"r-{text}",
        sampling=SamplingParams(max_tokens=8),
        messages=(ChatMessage("user", text),),
        adapter=adapter,
    )


async def answer(engine: PagedEngine, adapter: AdapterRef | None) -> list[GenerationChunk]:
    return [chunk async for chunk in engine.stream(request(adapter))]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def inner() -> AsyncIterator[CountingEngine]:
    engine = CountingEngine(max_adapters=2)
    yield engine
    await engine.stop()


async def paged(inner: CountingEngine, **kwargs: object) -> PagedEngine:
    engine = PagedEngine(inner, capacity=2, **kwargs)  # type: ignore[arg-type]
    await engine.start()
    return engine


async def test_a_cold_version_is_loaded_on_first_use_and_the_least_recent_is_evicted(
    inner: CountingEngine,
) -> None:
    engine = await paged(inner)
    for name in ("a", "b", "a", "c"):
        chunks = await answer(engine, ref(name))
        assert chunks[0].text.startswith(f"[{name}]")
    assert engine.loaded_adapters() == ["a@1", "c@1"]  # b was the least recently used
    assert inner.adds == ["a@1", "b@1", "c@1"]
    assert inner.removes == ["b@1"]
    assert (engine.stats.loads, engine.stats.evictions, engine.stats.hits) == (3, 1, 1)


async def test_a_version_in_use_is_never_evicted(inner: CountingEngine) -> None:
    engine = await paged(inner)
    held = engine.stream(request(ref("a")))
    assert (await anext(held)).text.startswith("[a]")  # a's request is still running
    await answer(engine, ref("b"))
    await answer(engine, ref("c"))  # needs a slot: b is idle, a is not
    assert engine.loaded_adapters() == ["a@1", "c@1"]
    await held.aclose()  # type: ignore[attr-defined]
    await answer(engine, ref("d"))
    assert "a@1" not in engine.loaded_adapters()  # idle now, and least recently used


async def test_a_cold_request_waits_for_a_slot_and_gets_503_when_none_frees(
    inner: CountingEngine,
) -> None:
    engine = await paged(inner, wait_timeout_s=0.2)
    first, second = engine.stream(request(ref("a"))), engine.stream(request(ref("b")))
    await anext(first)
    await anext(second)
    with pytest.raises(ServerOverloadedError, match="all 2 adapter slots"):
        await answer(engine, ref("c"))
    waiting = asyncio.create_task(answer(engine, ref("c")))
    await asyncio.sleep(0.05)
    await first.aclose()  # type: ignore[attr-defined]
    chunks = await asyncio.wait_for(waiting, 5)
    assert chunks[0].text.startswith("[c]")
    await second.aclose()  # type: ignore[attr-defined]


async def test_concurrent_requests_for_one_cold_version_share_one_load() -> None:
    inner = CountingEngine(load_delay_s=0.1)
    engine = PagedEngine(inner, capacity=4)
    await engine.start()
    results = await asyncio.gather(*(answer(engine, ref("a")) for _ in range(10)))
    assert inner.adds == ["a@1"]
    assert all(r[0].text.startswith("[a]") for r in results)
    assert (engine.stats.loads, engine.stats.misses) == (1, 10)


async def test_the_first_chunk_says_when_a_request_paid_a_cold_load() -> None:
    inner = CountingEngine(load_delay_s=0.05)
    engine = PagedEngine(inner, capacity=4)
    await engine.start()
    cold, warm, base = (
        await answer(engine, ref("a")),
        await answer(engine, ref("a")),
        await answer(engine, None),
    )
    assert cold[0].adapter_load_s is not None
    assert cold[0].adapter_load_s >= 0.05
    assert warm[0].adapter_load_s is None
    assert base[0].adapter_load_s is None
    assert engine.stats.load_seconds_sum >= 0.05
    assert sum(engine.stats.load_buckets) == 1


async def test_a_version_with_bad_files_fails_fast_without_retrying_and_others_serve(
    inner: CountingEngine,
) -> None:
    clock = Clock()
    checked: list[str] = []

    def verify(adapter: AdapterRef) -> None:
        checked.append(adapter.key)
        if adapter.key == "bad@1":
            raise AdapterError("the files of bad@1 are missing or unreadable; re-register it")

    engine = await paged(inner, verify=verify, failure_ttl_s=60, clock=clock)
    for _ in range(3):
        with pytest.raises(AdapterUnavailableError, match="adapter version bad@1 cannot be loaded"):
            await answer(engine, ref("bad"))
    assert checked == ["bad@1"]  # tried once, not once per request
    assert (await answer(engine, ref("good")))[0].text.startswith("[good]")
    assert "bad@1" not in engine.loaded_adapters()
    clock.now = 61  # past the failure's ttl: one more try
    with pytest.raises(AdapterUnavailableError):
        await answer(engine, ref("bad"))
    assert checked.count("bad@1") == 2
    assert engine.stats.load_failures == 2


async def test_pinned_versions_are_never_evicted_and_pins_must_leave_a_slot_free() -> None:
    inner = CountingEngine(max_adapters=3)
    engine = PagedEngine(inner, capacity=3)
    await engine.start()
    await engine.set_pinned([ref("sla")])
    assert engine.loaded_adapters() == ["sla@1"]  # pinning loads it
    for name in ("a", "b", "c", "d"):
        await answer(engine, ref(name))
    assert "sla@1" in engine.loaded_adapters()
    with pytest.raises(AdapterConflictError, match="every one of the engine's 3 adapter slots"):
        await engine.set_pinned([ref("sla"), ref("x"), ref("y")])
    assert engine.pinned == {"sla@1"}  # nothing changed
    await engine.set_pinned([])
    for name in ("e", "f", "g"):
        await answer(engine, ref(name))
    assert "sla@1" not in engine.loaded_adapters()


async def test_removing_a_version_waits_for_its_running_request(inner: CountingEngine) -> None:
    engine = await paged(inner)
    held = engine.stream(request(ref("a")))
    await anext(held)
    removal = asyncio.create_task(engine.remove_adapter("a@1"))
    await asyncio.sleep(0.05)
    assert not removal.done()
    assert "a@1" in inner.loaded_adapters()
    await held.aclose()  # type: ignore[attr-defined]
    await asyncio.wait_for(removal, 5)
    assert inner.loaded_adapters() == []


async def test_cold_requests_get_freed_slots_in_the_order_they_asked() -> None:
    inner = CountingEngine()
    engine = PagedEngine(inner, capacity=1)
    await engine.start()
    held = engine.stream(request(ref("h")))
    await anext(held)
    waiting = []
    for name in ("a", "b", "c"):
        waiting.append(asyncio.create_task(answer(engine, ref(name))))
        await asyncio.sleep(0.01)  # a asks first, then b, then c
    await held.aclose()  # type: ignore[attr-defined]
    results = await asyncio.wait_for(asyncio.gather(*waiting), 5)
    assert [r[0].text.split()[0] for r in results] == ["[a]", "[b]", "[c]"]
    assert inner.adds == ["h@1", "a@1", "b@1", "c@1"]

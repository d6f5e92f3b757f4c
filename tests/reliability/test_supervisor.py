"""The engine supervisor on its own: crashes and hangs are noticed, waiting requests fail fast,
the engine is rebuilt with backoff and gets its adapters back, and nobody has to step in."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from loramux.config import SupervisorSettings
from loramux.errors import EngineUnavailableError
from loramux.serve.engine import generate
from loramux.serve.supervisor import EngineState, SupervisedEngine
from loramux.serve.types import GenerationChunk, GenerationRequest, SamplingParams
from loramux.types import AdapterRef, ChatMessage
from tests.fakes import FaultyEngine

SETTINGS = SupervisorSettings(
    probe_interval_s=0.02, hang_timeout_s=0.3, stop_timeout_s=0.5, backoff_s=0.05, retry_after_s=2
)
HR = AdapterRef("hr@0123456789ab", Path("/nowhere/hr"))


def request(rid: str, words: int = 20) -> GenerationRequest:
    text = " ".join(f"w{i}" for i in range(words))
    return GenerationRequest(rid, SamplingParams(), (ChatMessage("user", text),), adapter=None)


class Factory:
    """Makes a new FaultyEngine per call and keeps them all."""

    def __init__(self, **kwargs: float) -> None:
        self.kwargs = kwargs
        self.engines: list[FaultyEngine] = []
        self.fail_next = 0

    def __call__(self) -> FaultyEngine:
        engine = FaultyEngine(**self.kwargs)
        if self.fail_next:
            self.fail_next -= 1
            engine.fail_starts = 1
        self.engines.append(engine)
        return engine


@pytest.fixture
async def supervised() -> AsyncIterator[tuple[SupervisedEngine, Factory]]:
    factory = Factory(token_delay_s=0.01)
    engine = SupervisedEngine(factory, SETTINGS)
    await engine.start()
    await engine.add_adapter(HR)
    yield engine, factory
    await engine.stop()


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_a_crash_mid_stream_restarts_the_engine_with_its_adapters(
    supervised: tuple[SupervisedEngine, Factory],
) -> None:
    engine, factory = supervised
    first = factory.engines[0]
    first.crash_after = 3
    got: list[GenerationChunk] = []

    async def consume() -> None:
        async for chunk in engine.stream(request("r1")):
            got.append(chunk)

    with pytest.raises(RuntimeError, match="injected engine crash"):
        await consume()
    assert len(got) == 3
    assert not engine.ready
    await wait_for(lambda: engine.ready)
    assert engine.restarts == 1
    assert engine.last_failure == "the engine stopped serving (not ready)"
    assert len(factory.engines) == 2
    assert engine.engine is factory.engines[1]
    assert factory.engines[1].loaded_adapters() == [HR.key]
    result = await generate(engine, request("r2", words=3))
    assert result.text.startswith("[base] w0")


async def test_requests_during_a_restart_get_503_with_retry_after(
    supervised: tuple[SupervisedEngine, Factory],
) -> None:
    engine, factory = supervised
    factory.kwargs["start_delay_s"] = 0.3  # the new engine takes a while to load
    factory.engines[0].crash_after = 0
    with pytest.raises(RuntimeError):
        await generate(engine, request("r1"))
    await wait_for(lambda: engine.state is EngineState.RECOVERING)
    with pytest.raises(EngineUnavailableError, match="restarting after a failure") as refused:
        await generate(engine, request("r2"))
    assert refused.value.status == 503
    assert refused.value.retry_after_s == 2
    with pytest.raises(EngineUnavailableError):
        await engine.add_adapter(AdapterRef("it@0123456789ab", Path("/nowhere/it")))
    await wait_for(lambda: engine.ready)
    assert engine.loaded_adapters() == [HR.key]


async def test_a_hung_engine_fails_its_waiting_requests_and_is_rebuilt(
    supervised: tuple[SupervisedEngine, Factory],
) -> None:
    engine, factory = supervised
    factory.engines[0].hang_after = 2
    others = asyncio.create_task(generate(engine, request("waiting-too")))
    with pytest.raises(EngineUnavailableError, match="failed while generating this answer"):
        await generate(engine, request("stuck"))
    assert "hung" in (engine.last_failure or "")
    await wait_for(lambda: engine.ready)
    assert engine.restarts == 1
    # The other request was waiting on the same engine: it failed too, or had finished before.
    try:
        await others
    except EngineUnavailableError:
        pass
    assert "stuck" in factory.engines[0].cancelled
    assert (await generate(engine, request("after", words=2))).completion_tokens == 3


async def test_failed_restarts_are_retried_with_backoff(
    supervised: tuple[SupervisedEngine, Factory],
) -> None:
    engine, factory = supervised
    factory.fail_next = 2
    factory.engines[0].crash_after = 0
    with pytest.raises(RuntimeError):
        await generate(engine, request("r1"))
    await wait_for(lambda: engine.ready)
    assert len(factory.engines) == 4  # the first, two failed attempts, the one that started
    assert [e.starts for e in factory.engines] == [1, 1, 1, 1]
    assert engine.restarts == 1


async def test_a_slow_reader_is_not_a_hang(supervised: tuple[SupervisedEngine, Factory]) -> None:
    engine, _ = supervised
    chunks = engine.stream(request("slow-reader", words=5))
    await anext(chunks)
    await asyncio.sleep(2 * SETTINGS.hang_timeout_s)  # the client reads nothing for a while
    assert engine.restarts == 0
    rest = [chunk async for chunk in chunks]
    assert rest[-1].finish_reason is not None


async def test_an_engine_that_heals_itself_is_only_reported_down() -> None:
    class Remote(FaultyEngine):
        @property
        def name(self) -> str:
            return "remote"

    remote = Remote()
    engine = SupervisedEngine(lambda: remote, SETTINGS)
    await engine.start()
    remote._ready = False  # every replica went away
    await asyncio.sleep(5 * SETTINGS.probe_interval_s)
    assert not engine.ready
    assert engine.restarts == 0
    remote._ready = True
    assert engine.ready
    await engine.stop()


async def test_the_same_instance_is_restarted_when_there_is_no_factory() -> None:
    single = FaultyEngine()
    engine = SupervisedEngine(lambda: single, SETTINGS)
    await engine.start()
    await single.stop()  # as if it died
    await wait_for(lambda: engine.restarts == 1 and engine.ready)
    assert single.starts == 2
    await engine.stop()


async def test_an_engine_the_supervisor_replaced_is_not_kept_alive() -> None:
    made: list[weakref.ref[FaultyEngine]] = []

    def factory() -> FaultyEngine:
        engine = FaultyEngine(token_delay_s=0.001)
        made.append(weakref.ref(engine))
        return engine

    supervised = SupervisedEngine(factory, SETTINGS)
    await supervised.start()
    await supervised.add_adapter(HR)
    try:
        for n in range(3):
            await generate(supervised, request(f"r{n}", words=3))
            await supervised._recover("test: rebuild")
        for _ in range(3):  # the loop's own finalizers of closed streams run on its next turns
            await asyncio.sleep(0)
        gc.collect()
        assert [ref() is None for ref in made] == [True, True, True, False]
    finally:
        await supervised.stop()

"""The remote engine against hand-written fake vLLM servers on loopback (two replicas)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from loramux.config import EngineConfig, RemoteEngineConfig
from loramux.errors import (
    AdapterError,
    ContextLengthExceededError,
    EngineError,
    EngineUnavailableError,
)
from loramux.serve.engine import generate
from loramux.serve.remote import RemoteEngine
from loramux.serve.types import GenerationRequest, SamplingParams
from loramux.types import AdapterRef, ChatMessage
from tests.serve.fake_vllm_server import FakeVLLM, Served

MODEL = "base-model"


@pytest.fixture
def replicas() -> Iterator[list[Served]]:
    served = [Served(FakeVLLM("r0")).start(), Served(FakeVLLM("r1")).start()]
    yield served
    for s in served:
        s.stop()


def remote_config(replicas: list[Served], **remote: Any) -> EngineConfig:
    return EngineConfig(remote=RemoteEngineConfig(urls=[s.url for s in replicas], **remote))


@pytest.fixture
async def engine(replicas: list[Served]) -> AsyncIterator[RemoteEngine]:
    # Every adapter on every replica (`replicas_per_adapter: all`); placement on k of them is
    # tested in test_remote_placement.py.
    config = remote_config(replicas, replicas_per_adapter="all")
    eng = RemoteEngine(config, model_id=MODEL, probe_interval_s=0.1)
    await eng.start()
    yield eng
    await eng.stop()


def adapter(name: str, tmp_path: Path) -> AdapterRef:
    return AdapterRef(key=f"{name}@1", path=tmp_path / name)


def request(
    text: str, adapter: AdapterRef | None = None, *, max_tokens: int | None = 16, chat: bool = True
) -> GenerationRequest:
    sampling = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    if chat:
        return GenerationRequest("t", sampling, (ChatMessage("user", text),), adapter=adapter)
    return GenerationRequest("t", sampling, prompt=text, adapter=adapter)


async def test_adapters_are_loaded_on_every_replica_and_answer(
    engine: RemoteEngine, replicas: list[Served], tmp_path: Path
) -> None:
    hr = adapter("hr", tmp_path)
    await engine.add_adapter(hr)
    await engine.add_adapter(hr)  # idempotent
    assert all(s.fake.adapters == {"hr@1": str(tmp_path / "hr")} for s in replicas)
    assert engine.loaded_adapters() == ["hr@1"]
    result = await generate(engine, request("how many days off", hr))
    assert result.text.startswith("[hr@1@r")
    assert result.text.endswith("] how many days off")
    assert result.finish_reason.value == "stop"
    assert (result.prompt_tokens, result.completion_tokens) == (9, 5)
    base = await generate(engine, request("plain words here", chat=False))
    assert base.text.startswith(f"[{MODEL}@r")
    assert engine.context_length == 512


async def test_each_request_goes_to_the_least_loaded_replica_holding_its_adapter(
    engine: RemoteEngine, replicas: list[Served], tmp_path: Path
) -> None:
    for s in replicas:
        s.fake.token_delay_s = 0.02
    replicas[1].fake.refuse.add("only-r0@1")
    only_r0 = adapter("only-r0", tmp_path)
    await engine.add_adapter(only_r0)  # loads where it can: r0
    assert "only-r0@1" in replicas[0].fake.adapters
    assert "only-r0@1" not in replicas[1].fake.adapters
    results = await asyncio.gather(*(generate(engine, request("a b c", only_r0)) for _ in range(4)))
    assert all("@r0]" in r.text for r in results)
    results = await asyncio.gather(*(generate(engine, request("a b c")) for _ in range(6)))
    assert sorted(r.text.split("@")[1][:2] for r in results) == ["r0"] * 3 + ["r1"] * 3


async def test_an_adapter_no_replica_can_load_is_refused(
    engine: RemoteEngine, replicas: list[Served], tmp_path: Path
) -> None:
    for s in replicas:
        s.fake.refuse.add("bad@1")
    with pytest.raises(AdapterError, match="no replica could load adapter bad@1"):
        await engine.add_adapter(adapter("bad", tmp_path))
    assert engine.loaded_adapters() == []


async def test_removing_waits_for_running_requests_then_unloads_everywhere(
    engine: RemoteEngine, replicas: list[Served], tmp_path: Path
) -> None:
    hr = adapter("hr", tmp_path)
    await engine.add_adapter(hr)
    for s in replicas:
        s.fake.token_delay_s = 0.05
    running = asyncio.create_task(generate(engine, request("one two three four", hr)))
    await asyncio.sleep(0.05)
    await engine.remove_adapter("hr@1")
    assert (await running).completion_tokens == 5  # it finished before the unload
    assert all(s.fake.adapters == {} for s in replicas)
    with pytest.raises(EngineError, match="not loaded"):
        await generate(engine, request("x", hr))
    await engine.remove_adapter("hr@1")  # no-op


async def test_too_long_a_request_is_refused_at_the_first_chunk(engine: RemoteEngine) -> None:
    stream = engine.stream(request("hi", max_tokens=600))
    with pytest.raises(ContextLengthExceededError):
        await anext(stream)
    # Without max_tokens the engine's default is capped by the room the prompt leaves.
    capped = await generate(engine, request("word " * 500, max_tokens=None))
    assert capped.finish_reason.value == "length"
    assert capped.completion_tokens == 512 - 505
    with pytest.raises(ContextLengthExceededError):
        await generate(engine, request("word " * 510, max_tokens=None))


async def test_closing_a_stream_cancels_the_request_upstream(
    engine: RemoteEngine, replicas: list[Served]
) -> None:
    for s in replicas:
        s.fake.token_delay_s = 0.05
    stream = engine.stream(request(" ".join(["w"] * 100), max_tokens=100))
    first = await anext(stream)
    assert first.text.startswith("[")
    await stream.aclose()
    for _ in range(100):
        if sum(s.fake.cancelled for s in replicas) == 1:
            break
        await asyncio.sleep(0.02)
    assert sum(s.fake.cancelled for s in replicas) == 1
    assert sum(s.fake.active for s in replicas) == 0


async def test_a_replica_that_lost_an_adapter_gets_it_again(
    engine: RemoteEngine, replicas: list[Served], tmp_path: Path
) -> None:
    hr = adapter("hr", tmp_path)
    await engine.add_adapter(hr)
    del replicas[1].fake.adapters["hr@1"]  # as after a restart
    results = [await generate(engine, request("x y", hr)) for _ in range(4)]
    assert all(r.text.startswith("[hr@1@") for r in results)
    assert "hr@1" in replicas[1].fake.adapters


async def test_a_dead_replica_is_skipped_and_rejoins_with_the_adapters(
    engine: RemoteEngine, replicas: list[Served], tmp_path: Path
) -> None:
    hr = adapter("hr", tmp_path)
    await engine.add_adapter(hr)
    port = replicas[1].port
    replicas[1].stop()
    results = [await generate(engine, request("x", hr)) for _ in range(4)]
    assert all("@r0]" in r.text for r in results)
    assert engine.ready
    back = Served(FakeVLLM("r1b"), port=port).start()  # restarted: no adapters
    replicas[1] = back
    for _ in range(100):
        if "hr@1" in back.fake.adapters:
            break
        await asyncio.sleep(0.05)
    assert back.fake.adapters == {"hr@1": str(tmp_path / "hr")}
    replicas[0].fake.token_delay_s = 0.05
    results = await asyncio.gather(*(generate(engine, request("x", hr)) for _ in range(4)))
    assert any("@r1b]" in r.text for r in results)


async def test_start_fails_when_no_replica_serves_the_model(replicas: list[Served]) -> None:
    eng = RemoteEngine(remote_config(replicas), model_id="another-model")
    with pytest.raises(EngineUnavailableError, match="no vLLM server answered"):
        await eng.start()
    assert not eng.ready


async def test_each_replica_holds_a_bounded_set_loaded_and_unloaded_on_demand(
    engine: RemoteEngine, replicas: list[Served], tmp_path: Path
) -> None:
    from loramux.serve.paging import PagedEngine

    paged = PagedEngine(engine, capacity=2)
    for name in ("a", "b", "c", "a", "d"):
        result = await generate(paged, request("x y", adapter(name, tmp_path)))
        assert result.text.startswith(f"[{name}@1@r")
        for s in replicas:
            assert len(s.fake.adapters) <= 2
    for s in replicas:  # c pushed a out, a pushed b out, d pushed c out
        assert set(s.fake.adapters) == {"a@1", "d@1"}
    assert (paged.stats.loads, paged.stats.evictions) == (5, 3)

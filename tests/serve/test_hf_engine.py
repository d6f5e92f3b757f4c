"""The hf engine on the real SmolLM2 and the real demo adapters (a few tokens each)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from loramux.adapters.version import inspect_adapter
from loramux.config import EngineConfig, HFEngineConfig
from loramux.errors import ContextLengthExceededError, EngineError
from loramux.serve.engine import generate
from loramux.serve.hf import HFEngine
from loramux.serve.types import GenerationRequest, GenerationResult, SamplingParams
from loramux.types import AdapterRef, ChatMessage
from tests.conftest import DEMO_ADAPTERS
from tests.fakes import PoisonedSampler

pytestmark = pytest.mark.slow

BASE = "SmolLM2-135M-Instruct"
# Phrasings the demo adapters were trained on (demo/data/*/train.jsonl).
QUESTIONS = {
    "hr": "Where can I update my home address?",
    "it": "Which VPN do we use?",
    None: "What is the capital of France?",
}


def ref(name: str) -> AdapterRef:
    return inspect_adapter(DEMO_ADAPTERS / name, name=name, base_model=BASE).ref()


@pytest.fixture(scope="module")
def engine(base_model_dir: Path) -> Iterator[HFEngine]:
    eng = HFEngine(
        base_model_dir, EngineConfig(max_batch_size=8, hf=HFEngineConfig(max_wait_ms=20))
    )
    asyncio.run(eng.start())
    for name in ("hr", "it"):
        asyncio.run(eng.add_adapter(ref(name)))
    yield eng
    asyncio.run(eng.stop())


def request(
    adapter: str | None, question: str, *, max_tokens: int = 12, **sampling: object
) -> GenerationRequest:
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    if sampling:
        params = SamplingParams(max_tokens=max_tokens, **sampling)  # type: ignore[arg-type]
    return GenerationRequest(
        request_id=f"t-{adapter}",
        sampling=params,
        messages=(ChatMessage("user", question),),
        adapter=ref(adapter) if adapter else None,
    )


async def test_mixed_batch_equals_each_request_alone(engine: HFEngine) -> None:
    alone = {a: (await generate(engine, request(a, q))).text for a, q in QUESTIONS.items()}
    together = await asyncio.gather(
        *(generate(engine, request(a, q)) for a, q in QUESTIONS.items())
    )
    assert [r.text for r in together] == list(alone.values())
    # Each adapter answers with what it was trained on; the base model does not know it.
    assert "Harbor" in alone["hr"]
    assert "FjordLink" in alone["it"]
    base_on_hr = (await generate(engine, request(None, QUESTIONS["hr"]))).text
    assert "Harbor" not in base_on_hr


async def test_a_request_joining_a_running_batch_gets_the_same_answer(engine: HFEngine) -> None:
    expected = (await generate(engine, request("it", QUESTIONS["it"]))).text
    long_running = asyncio.create_task(
        generate(engine, request(None, "Write a long story about a ship.", max_tokens=40))
    )
    await asyncio.sleep(0.5)  # the story is decoding; the next request joins mid-flight
    joined = await generate(engine, request("it", QUESTIONS["it"]))
    story = await long_running
    assert joined.text == expected
    assert story.completion_tokens == 40
    assert story.finish_reason.value == "length"


async def test_closing_a_stream_cancels_it_and_others_continue(engine: HFEngine) -> None:
    stream = engine.stream(request(None, "Count from one to fifty.", max_tokens=60))
    first = await anext(stream)
    assert first.finish_reason is None
    await stream.aclose()
    result = await generate(engine, request("hr", QUESTIONS["hr"]))
    assert "Harbor" in result.text


async def test_same_seed_same_sample(engine: HFEngine) -> None:
    q = "Give me a name for a cat."
    a = await generate(engine, request(None, q, temperature=1.0, seed=7, max_tokens=8))
    b = await generate(engine, request(None, q, temperature=1.0, seed=7, max_tokens=8))
    assert a.text == b.text


async def test_prompt_over_the_context_is_refused_before_generating(engine: HFEngine) -> None:
    with pytest.raises(ContextLengthExceededError, match="context length of 2048"):
        await generate(engine, request(None, "word " * 2100))
    with pytest.raises(ContextLengthExceededError) as info:
        await generate(engine, request(None, "hi", max_tokens=2040))
    assert info.value.param == "max_tokens"


async def test_adapters_load_and_unload_while_serving(engine: HFEngine, tmp_path: Path) -> None:
    copy = tmp_path / "hr-copy"
    copy.mkdir()
    for f in (DEMO_ADAPTERS / "hr").iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    extra = AdapterRef(key="hr-copy@1", path=copy)
    busy = asyncio.create_task(
        generate(engine, request(None, "Describe the ocean.", max_tokens=30))
    )
    await engine.add_adapter(extra)
    assert "hr-copy@1" in engine.loaded_adapters()
    req = GenerationRequest(
        "copy",
        SamplingParams(max_tokens=12, temperature=0.0),
        (ChatMessage("user", QUESTIONS["hr"]),),
        adapter=extra,
    )
    assert "Harbor" in (await generate(engine, req)).text
    await engine.remove_adapter("hr-copy@1")
    assert "hr-copy@1" not in engine.loaded_adapters()
    with pytest.raises(EngineError, match="not loaded"):
        await generate(engine, req)
    assert (await busy).completion_tokens == 30


async def test_stop_string_ends_generation(engine: HFEngine) -> None:
    full = (await generate(engine, request("it", QUESTIONS["it"], max_tokens=20))).text
    word = "FjordLink"
    cut = await generate(
        engine, request("it", QUESTIONS["it"], max_tokens=20, temperature=0.0, stop=(word,))
    )
    assert cut.text == full[: full.index(word)]
    assert cut.finish_reason.value == "stop"


async def test_paging_versions_in_and_out_keeps_their_answers(
    engine: HFEngine, tmp_path: Path
) -> None:
    """A pager with one slot: every switch between the two adapters is an eviction and a cold
    load, and each answer stays what the adapter says when it is loaded for good."""
    import shutil

    from loramux.serve.paging import PagedEngine

    expected = {a: (await generate(engine, request(a, QUESTIONS[a]))).text for a in ("hr", "it")}
    copies = {}
    for name in ("hr", "it"):
        shutil.copytree(DEMO_ADAPTERS / name, tmp_path / name)
        copies[name] = AdapterRef(key=f"{name}-paged@1", path=tmp_path / name)
    paged = PagedEngine(engine, capacity=1)
    reused = engine.reused_slots
    for name in ("hr", "it", "hr"):
        params = SamplingParams(max_tokens=12, temperature=0.0)
        messages = (ChatMessage("user", QUESTIONS[name]),)
        result = await generate(
            paged, GenerationRequest("p", params, messages, adapter=copies[name])
        )
        assert result.text == expected[name]
        held = [k for k in engine.loaded_adapters() if k.endswith("-paged@1")]
        assert held == [copies[name].key]
    assert (paged.stats.loads, paged.stats.evictions) == (3, 2)
    # it, then hr again, went into the slot the other one left (the first load may too)
    assert engine.reused_slots - reused >= 2


async def test_an_adapter_loaded_after_every_other_was_unloaded_serves(
    base_model_dir: Path,
) -> None:
    """PEFT 0.21 keeps pointing at a deleted adapter once the last one is gone; the engine
    must not fail the next adapter's requests for it (paging unloads everything at times)."""
    engine = HFEngine(base_model_dir, EngineConfig(max_batch_size=4))
    await engine.start()
    try:
        await engine.add_adapter(ref("hr"))
        await engine.remove_adapter(ref("hr").key)
        assert engine.loaded_adapters() == []
        await engine.add_adapter(ref("it"))
        result = await generate(engine, request("it", QUESTIONS["it"]))
        assert "FjordLink" in result.text
        base = await generate(engine, request(None, QUESTIONS[None]))
        assert base.completion_tokens > 0
    finally:
        await engine.stop()


@pytest.fixture(scope="module")
def poisoned(base_model_dir: Path) -> Iterator[tuple[HFEngine, PoisonedSampler]]:
    """An engine whose sampler poisons the row of the request `poison` (and no other)."""
    sampler = PoisonedSampler("poison")
    eng = HFEngine(
        base_model_dir,
        EngineConfig(max_batch_size=8, hf=HFEngineConfig(max_wait_ms=50)),
        sampler=sampler,
    )
    asyncio.run(eng.start())
    for name in ("hr", "it"):
        asyncio.run(eng.add_adapter(ref(name)))
    yield eng, sampler
    asyncio.run(eng.stop())


@pytest.mark.parametrize("mode", ["raise", "bad_token"])
async def test_a_poisoned_row_fails_alone_and_its_batch_answers_as_alone(
    poisoned: tuple[HFEngine, PoisonedSampler], mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """`raise`: one row's sampling fails (NaN probabilities); `bad_token`: one row feeds the
    next forward pass a token id outside the vocabulary, which fails the whole decode step, so
    every row is re-run alone from its prompt and its tokens so far."""
    engine, sampler = poisoned
    sampler.mode, sampler.poisoned = mode, 0
    caplog.set_level(logging.WARNING, logger="loramux.serve.hf")
    alone = [(await generate(engine, request(a, q))).text for a, q in QUESTIONS.items()]
    poison = replace(request(None, "Write a long story about a ship."), request_id="poison")
    *others, failed = await asyncio.gather(
        *(generate(engine, request(a, q)) for a, q in QUESTIONS.items()),
        generate(engine, poison),
        return_exceptions=True,
    )
    assert isinstance(failed, EngineError), failed
    assert sampler.poisoned >= 1
    assert [r.text for r in others if isinstance(r, GenerationResult)] == alone
    if mode == "bad_token":
        assert re.search(r"a decode step of [2-9] rows failed", caplog.text), caplog.text
    assert "poison" in caplog.text  # the failed request is named in the log
    after = await generate(engine, request("hr", QUESTIONS["hr"]))  # the engine goes on
    assert after.text == alone[0]

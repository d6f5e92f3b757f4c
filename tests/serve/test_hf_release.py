"""A stopped hf engine lets go of its model (real SmolLM2, the demo `hr` adapter): nothing
keeps the weights of a stopped or rebuilt engine alive, and a restarted instance answers as
before with its adapter loaded afresh."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest

from loramux.adapters.version import inspect_adapter
from loramux.config import EngineConfig, HFEngineConfig
from loramux.serve.engine import generate
from loramux.serve.hf import HFEngine
from loramux.serve.types import GenerationRequest, SamplingParams
from loramux.types import AdapterRef, ChatMessage
from tests.conftest import DEMO_ADAPTERS

pytestmark = pytest.mark.slow

BASE = "SmolLM2-135M-Instruct"


def hr() -> AdapterRef:
    return inspect_adapter(DEMO_ADAPTERS / "hr", name="hr", base_model=BASE).ref()


def ask() -> GenerationRequest:
    return GenerationRequest(
        request_id="r",
        sampling=SamplingParams(max_tokens=8, temperature=0.0),
        messages=(ChatMessage("user", "Where can I update my home address?"),),
        adapter=hr(),
    )


async def test_stop_frees_the_model_and_a_restart_loads_it_afresh(base_model_dir: Path) -> None:
    engine = HFEngine(base_model_dir, EngineConfig(max_batch_size=4, hf=HFEngineConfig()))
    await engine.start()
    await engine.add_adapter(hr())
    before = (await generate(engine, ask())).text
    model, peft = weakref.ref(engine._model), weakref.ref(engine._peft)
    await engine.stop()
    gc.collect()
    assert model() is None, "a stopped engine still holds its model"
    assert peft() is None, "a stopped engine still holds PEFT's wrapper"
    assert engine.loaded_adapters() == []
    await engine.start()  # the supervisor's path when it has no factory: the same instance
    await engine.add_adapter(hr())
    try:
        assert (await generate(engine, ask())).text == before
    finally:
        await engine.stop()

"""The gathered LoRA forward of the hf engine (`serve/hf_gather.py`) against PEFT's own loop.

Real SmolLM2 and real PEFT slots (`AdapterSlots`), adapters of different ranks, scalings and
target modules, with base rows in the batch: the gathered pass must give PEFT's logits and its
greedy tokens, also after a parked slot is reused with other weights and after a slot of a new
rank is created (the stacks are rebuilt) or deleted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loramux.config import EngineConfig
from loramux.serve.hf_load import LoadedBase, load_base
from loramux.serve.hf_slots import AdapterSlots, lora_layers, new_peft_slot, read_weights
from loramux.types import AdapterRef
from tests.builders import write_model_lora

pytestmark = pytest.mark.slow

BASE = "__base__"
SHAPES: list[dict[str, Any]] = [
    {"r": 8},
    {"r": 8, "seed": 1},
    {"r": 4, "alpha": 32, "targets": ("q_proj", "k_proj", "v_proj", "o_proj")},
    {"r": 16, "alpha": 8, "targets": ("v_proj", "down_proj")},
]
PROMPTS = ["The capital of France is", "def add(a, b):", "Once upon a time", "2 + 2 ="]


@pytest.fixture(scope="module")
def base(base_model_dir: Path) -> LoadedBase:
    return load_base(base_model_dir, EngineConfig(threads=2), 2048)


class Harness:
    """An `AdapterSlots` over the real model, loading adapters as the engine's worker does."""

    def __init__(self, base: LoadedBase, capacity: int) -> None:
        self.base = base
        self.peft: Any = None
        self.slots = AdapterSlots(capacity)

    def load(self, ref: AdapterRef) -> str:
        def create(slot: str, adapter: AdapterRef) -> list[Any]:
            self.peft = new_peft_slot(self.base.model, self.peft, slot, adapter)
            return lora_layers(self.peft)

        return self.slots.load(self.peft, ref, read_weights(ref.path), create)

    def logits(self, names: list[str], mode: str) -> Any:
        import torch

        tok = self.base.tokenizer
        enc = tok(PROMPTS * (len(names) // len(PROMPTS) + 1), return_tensors="pt", padding=True)
        ids, mask = enc["input_ids"][: len(names)], enc["attention_mask"][: len(names)]
        self.slots.lora_forward = mode
        with torch.inference_mode(), self.slots.rows(names):
            return self.peft.base_model.model(input_ids=ids, attention_mask=mask).logits


@pytest.fixture
def harness(base: LoadedBase, tmp_path: Path) -> Iterator[Harness]:
    base.tokenizer.padding_side = "left"
    h = Harness(base, capacity=8)
    for i, shape in enumerate(SHAPES):
        folder = write_model_lora(tmp_path / f"a{i}", base.model, **shape)
        h.load(AdapterRef(f"a{i}@v1", folder))
    yield h
    if h.peft is not None:  # leave the shared base model as it was loaded
        h.peft.unload()


def check_same(h: Harness, names: list[str]) -> None:
    import torch

    peft = h.logits(names, "peft")
    gathered = h.logits(names, "gathered")
    torch.testing.assert_close(gathered, peft, atol=2e-4, rtol=1e-4)
    assert gathered[:, -1].argmax(-1).tolist() == peft[:, -1].argmax(-1).tolist()


def test_a_mixed_batch_gives_pefts_logits_and_greedy_tokens(harness: Harness) -> None:
    s = [harness.slots.get(f"a{i}@v1") for i in range(len(SHAPES))]
    names = [s[0], BASE, s[1], s[2], s[3], s[0], BASE, s[3]]
    check_same(harness, [str(n) for n in names])
    assert harness.slots.gathered_layers == len(lora_layers(harness.peft)) == 30 * 5
    # the adapters do change the outputs: a gathered pass that added nothing would fail here
    import torch

    lora = harness.logits(names, "gathered")  # type: ignore[arg-type]
    base = harness.logits([BASE] * len(names), "gathered")
    assert not torch.allclose(lora[0], base[0], atol=1e-3)


def test_a_parked_slot_reused_with_new_weights_serves_them(
    harness: Harness, tmp_path: Path
) -> None:
    harness.logits([str(harness.slots.get("a0@v1"))], "gathered")  # the stacks are built
    slot = harness.slots.unload("a0@v1")
    folder = write_model_lora(tmp_path / "new", harness.base.model, r=8, seed=7)
    assert harness.load(AdapterRef("new@v1", folder)) == slot  # copied into the parked slot
    assert harness.slots.reused == 1
    check_same(harness, [str(slot), str(harness.slots.get("a1@v1")), BASE])


def test_a_new_rank_and_a_deleted_slot_rebuild_the_stacks(harness: Harness, tmp_path: Path) -> None:
    harness.logits([str(harness.slots.get("a0@v1"))], "gathered")
    folder = write_model_lora(tmp_path / "r32", harness.base.model, r=32, targets=("q_proj",))
    big = harness.load(AdapterRef("r32@v1", folder))
    check_same(harness, [big, str(harness.slots.get("a2@v1")), BASE, big])
    harness.slots.unload("a1@v1")
    harness.slots.capacity = 5  # the next new shape deletes the parked slot
    folder = write_model_lora(tmp_path / "r2", harness.base.model, r=2)
    small = harness.load(AdapterRef("r2@v1", folder))
    assert len(harness.slots.live) == 5
    check_same(harness, [small, big, str(harness.slots.get("a3@v1"))])

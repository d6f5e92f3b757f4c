"""A fused multi-LoRA linear layer for vLLM decode batches: shrink and expand in one launch.

vLLM applies a LoRA to a linear layer in three launches: zero a float32 buffer, shrink
(`buf = x @ A[slot]`, split-K with atomics) and expand (`y += buf @ B[slot]`). At decode sizes the
work of each is a few microseconds, so the launches and the pipeline drain between them cost as
much as the bytes. This kernel does the layer's LoRA in one launch (or two, `launches: 2`):

- **shrink items** (slice, row tile, K split): `x_tile @ A_all` where `A_all` is the stacked
  `lora_a` read as one (slots * rank) x K matrix; each row keeps the columns of its own slot
  (masked, as in `lora_expand.py`), summed into `buf[slice, row, :]` with float32 atomics;
  column groups that no row of the tile uses are skipped.
- **expand items** (slice, column tile, row tile): the masked expand of `lora_expand.py`,
  reading `buf`.

In one launch, every program first draws a ticket from a counter (`atomic_add`): the first
tickets are the shrink items, the rest expand items, which wait until the shrink count is
complete. Tickets are drawn in the order programs actually run, so a waiting program only waits
on programs that are already running: no deadlock whatever the GPU schedules (CUB's single-pass
scan relies on the same). Triton's interpreter runs programs one by one, in ticket order, so the
test on the CPU runs the same code. `buf` and the counters live in a per-device workspace that is
all zeros between calls: the last expand item of each row tile zeroes its rows of `buf`, the last
program resets the counters, so no zeroing launch is needed (and CUDA-graph replays find it zero).

Config: `engine.vllm.lora_kernels: fused` (GPU); `lora_fused_worker.install()` puts it into vLLM.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from loramux.serve import kernel_tables
from loramux.serve.lora_expand import _slices

try:  # triton ships with vLLM's GPU and CPU builds; the kernel is only defined where it exists
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - the hf-only install
    triton = None
    tl = None


if triton is not None:

    @triton.jit
    def _shrink_item(
        item, x_ptr, a_ptr, buf_ptr, map_ptr, M, K, NUM_COLS, scale,
        x_d0, x_d1, a_d0, a_d1, a_d2, buf_d0, M_TILES, K_PER,
        BM: tl.constexpr, BK: tl.constexpr, BC: tl.constexpr, R: tl.constexpr,
        SPLIT_K: tl.constexpr, SLICE_NUM: tl.constexpr, DOT_F32: tl.constexpr,
    ):  # fmt: skip
        """buf[slice, rows, :] += scale * x[rows, k split] @ A[slot(row)][:, k split]^T."""
        per_slice = M_TILES * SPLIT_K
        s = item // per_slice
        mt = (item % per_slice) // SPLIT_K
        sk = item % SPLIT_K
        if SLICE_NUM == 1:
            a_base = a_ptr
        else:
            a_base = tl.load(a_ptr + s).to(tl.pointer_type(x_ptr.dtype.element_ty))
        rows = mt * BM + tl.arange(0, BM)
        row_ok = rows < M
        slot = tl.load(map_ptr + rows, mask=row_ok, other=-1).to(tl.int32)
        cc = tl.arange(0, BC)
        acc = tl.zeros((BM, R), dtype=tl.float32)
        k_lo = sk * K_PER
        k_hi = tl.minimum(k_lo + K_PER, K)
        for c0 in range(0, NUM_COLS, BC):
            col = c0 + cc
            col_ok = col < NUM_COLS
            hit = slot[:, None] == (col // R)[None, :]
            if tl.max(hit.to(tl.int32)) > 0:  # some row of the tile uses these slots
                part = tl.zeros((BM, BC), dtype=tl.float32)
                for k0 in range(k_lo, k_hi, BK):
                    ks = k0 + tl.arange(0, BK)
                    k_ok = ks < k_hi
                    xt = tl.load(
                        x_ptr + rows[:, None] * x_d0 + ks[None, :] * x_d1,
                        mask=row_ok[:, None] & k_ok[None, :],
                        other=0.0,
                    )
                    at = tl.load(
                        a_base + (col // R)[None, :] * a_d0 + (col % R)[None, :] * a_d1
                        + ks[:, None] * a_d2,
                        mask=k_ok[:, None] & col_ok[None, :],
                        other=0.0,
                    )  # fmt: skip
                    if DOT_F32:
                        part = tl.dot(xt.to(tl.float32), at.to(tl.float32), part)
                    else:
                        part = tl.dot(xt, at, part)
                part = tl.where(hit, part, 0.0)
                acc += tl.sum(tl.reshape(part, (BM, BC // R, R)), axis=1)
        acc = acc * scale
        out = buf_ptr + s * buf_d0 + rows[:, None] * R + tl.arange(0, R)[None, :]
        if SPLIT_K == 1:
            tl.store(out, acc, mask=row_ok[:, None])
        else:
            tl.atomic_add(out, acc, mask=row_ok[:, None], sem="relaxed")

    @triton.jit
    def _expand_item(
        item, buf_ptr, b_ptr, out_ptr, map_ptr, tile_ctl_ptr, slice_start_ptr, hidden_sizes_ptr,
        l_d0_ptr, l_d1_ptr, l_d2_ptr, M, NUM_COLS, N_TILES, M_TILES, buf_d0, out_d0, out_d1,
        BM: tl.constexpr, BN: tl.constexpr, BC: tl.constexpr, R: tl.constexpr,
        SLICE_NUM: tl.constexpr, SAME_STRIDE: tl.constexpr, ADD_INPUTS: tl.constexpr,
        DOT_F32: tl.constexpr,
    ):  # fmt: skip
        """out[rows, slice cols] (+)= buf[slice, rows] @ B[slot(row)]^T; the last item of a row
        tile zeroes its rows of buf."""
        per_slice = N_TILES * M_TILES
        s = item // per_slice
        nt = (item % per_slice) // M_TILES
        mt = item % M_TILES
        if SAME_STRIDE:
            n_size = hidden_sizes_ptr
            l_d0 = l_d0_ptr
            l_d1 = l_d1_ptr
            l_d2 = l_d2_ptr
        else:
            n_size = tl.load(hidden_sizes_ptr + s)
            l_d0 = tl.load(l_d0_ptr + s)
            l_d1 = tl.load(l_d1_ptr + s)
            l_d2 = tl.load(l_d2_ptr + s)
        rows = mt * BM + tl.arange(0, BM)
        row_ok = rows < M
        if nt * BN < n_size:
            if SLICE_NUM == 1:
                b_base = b_ptr
                col_start = slice_start_ptr
            else:
                b_base = tl.load(b_ptr + s).to(tl.pointer_type(out_ptr.dtype.element_ty))
                col_start = tl.load(slice_start_ptr + s)
            slot = tl.load(map_ptr + rows, mask=row_ok, other=-1).to(tl.int32)
            kk = tl.arange(0, BC)
            k_rank = kk % R
            # every (slot, rank) column of a step needs the same buf values, repeated per slot
            xt = tl.load(
                buf_ptr + s * buf_d0 + rows[:, None] * R + k_rank[None, :],
                mask=row_ok[:, None],
                other=0.0,
                cache_modifier=".cg",  # written by other programs of this launch: skip L1
            ).to(out_ptr.dtype.element_ty)
            cols = nt * BN + tl.arange(0, BN)
            col_ok = cols < n_size
            acc = tl.zeros((BM, BN), dtype=tl.float32)
            for c0 in range(0, NUM_COLS, BC):
                k_slot = (c0 + kk) // R
                hit = slot[:, None] == k_slot[None, :]
                if tl.max(hit.to(tl.int32)) > 0:
                    a = tl.where(hit, xt, 0.0)
                    b = tl.load(
                        b_base + k_slot[:, None] * l_d0 + k_rank[:, None] * l_d2
                        + cols[None, :] * l_d1,
                        mask=((c0 + kk) < NUM_COLS)[:, None] & col_ok[None, :],
                        other=0.0,
                    )  # fmt: skip
                    if DOT_F32:
                        acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc)
                    else:
                        acc = tl.dot(a, b, acc)
            # vLLM's rounding: the product in the weights' dtype, then the add
            result = acc.to(out_ptr.dtype.element_ty)
            out = out_ptr + rows[:, None] * out_d0 + (col_start + cols)[None, :] * out_d1
            out_ok = row_ok[:, None] & col_ok[None, :]
            if ADD_INPUTS:  # the sum in float32, rounded once (as bf16 adds are on the GPU)
                old = tl.load(out, mask=out_ok, other=0.0).to(tl.float32)
                result = (result.to(tl.float32) + old).to(out_ptr.dtype.element_ty)
            tl.store(out, result, mask=out_ok)
        tl.debug_barrier()  # every thread's reads of buf are done before the count
        done = tl.atomic_add(tile_ctl_ptr + s * M_TILES + mt, 1, sem="acq_rel")
        if done == N_TILES - 1:  # the last item of this row tile: leave its buf rows zero
            tl.store(
                buf_ptr + s * buf_d0 + rows[:, None] * R + tl.arange(0, R)[None, :],
                tl.zeros((BM, R), dtype=tl.float32),
                mask=row_ok[:, None],
            )
            tl.atomic_xchg(tile_ctl_ptr + s * M_TILES + mt, 0)

    @triton.jit
    def _fused_lora_kernel(
        x_ptr, a_ptr, b_ptr, out_ptr, map_ptr, buf_ptr, ctl_ptr,
        slice_start_ptr, hidden_sizes_ptr, l_d0_ptr, l_d1_ptr, l_d2_ptr,
        M, K, NUM_COLS, scale, x_d0, x_d1, a_d0, a_d1, a_d2, buf_d0, out_d0, out_d1,
        S_ITEMS, TOTAL, S_M_TILES, K_PER, E_N_TILES, E_M_TILES,
        BM_S: tl.constexpr, BK: tl.constexpr, BC_S: tl.constexpr, SPLIT_K: tl.constexpr,
        BM_E: tl.constexpr, BN: tl.constexpr, BC_E: tl.constexpr, R: tl.constexpr,
        SLICE_NUM: tl.constexpr, SAME_STRIDE: tl.constexpr, ADD_INPUTS: tl.constexpr,
        PHASE: tl.constexpr,  # 0: both, by ticket; 1: shrink items only; 2: expand items only
        DOT_F32: tl.constexpr,  # products in float32: only for Triton's interpreter (see below)
    ):  # fmt: skip
        # ctl: [0] tickets drawn, [1] shrink items done, [2] programs done, [4:] row tiles
        if PHASE == 1:
            _shrink_item(tl.program_id(0), x_ptr, a_ptr, buf_ptr, map_ptr, M, K, NUM_COLS,
                         scale, x_d0, x_d1, a_d0, a_d1, a_d2, buf_d0, S_M_TILES, K_PER,
                         BM_S, BK, BC_S, R, SPLIT_K, SLICE_NUM, DOT_F32)  # fmt: skip
        elif PHASE == 2:
            _expand_item(tl.program_id(0), buf_ptr, b_ptr, out_ptr, map_ptr, ctl_ptr + 4,
                         slice_start_ptr, hidden_sizes_ptr, l_d0_ptr, l_d1_ptr, l_d2_ptr, M,
                         NUM_COLS, E_N_TILES, E_M_TILES, buf_d0, out_d0, out_d1,
                         BM_E, BN, BC_E, R, SLICE_NUM, SAME_STRIDE, ADD_INPUTS,
                         DOT_F32)  # fmt: skip
        else:
            ticket = tl.atomic_add(ctl_ptr, 1, sem="relaxed")
            if ticket < S_ITEMS:
                _shrink_item(ticket, x_ptr, a_ptr, buf_ptr, map_ptr, M, K, NUM_COLS, scale,
                             x_d0, x_d1, a_d0, a_d1, a_d2, buf_d0, S_M_TILES, K_PER,
                             BM_S, BK, BC_S, R, SPLIT_K, SLICE_NUM, DOT_F32)  # fmt: skip
                tl.debug_barrier()  # every thread's atomics are issued before the release
                tl.atomic_add(ctl_ptr + 1, 1, sem="release")
            else:
                # the shrink tickets were all drawn by programs that run now: they will finish
                while tl.atomic_add(ctl_ptr + 1, 0, sem="acquire") < S_ITEMS:
                    pass
                _expand_item(ticket - S_ITEMS, buf_ptr, b_ptr, out_ptr, map_ptr, ctl_ptr + 4,
                             slice_start_ptr, hidden_sizes_ptr, l_d0_ptr, l_d1_ptr, l_d2_ptr,
                             M, NUM_COLS, E_N_TILES, E_M_TILES, buf_d0, out_d0, out_d1,
                             BM_E, BN, BC_E, R, SLICE_NUM, SAME_STRIDE, ADD_INPUTS,
                         DOT_F32)  # fmt: skip
            if tl.atomic_add(ctl_ptr + 2, 1, sem="acq_rel") == TOTAL - 1:  # the last program
                tl.atomic_xchg(ctl_ptr, 0)
                tl.atomic_xchg(ctl_ptr + 1, 0)
                tl.atomic_xchg(ctl_ptr + 2, 0)


DEFAULT_ROWS_LIMIT = 256
DEFAULT_CONFIG: dict[str, int] = {
    "launches": 2, "bm_s": 32, "bk": 64, "split_k": 16, "bc_s": 128,
    "bm_e": 64, "bn": 64, "bc_e": 64, "num_warps": 4, "num_stages": 2,
}  # fmt: skip
"""Launch settings without a table (`fused.json` in the kernel table folder); two launches: the
one-launch form is picked per GPU by `loramux kernels tune` where it is faster."""
TABLE = "fused.json"
MAX_RANK = 512


def supports_rank(rank: int) -> bool:
    """Ranks the fused kernel takes: powers of two up to `MAX_RANK` (vLLM's 320 is not one)."""
    return 0 < rank <= MAX_RANK and rank & (rank - 1) == 0


def pick_config(m: int) -> dict[str, int]:
    """The launch settings for a batch of `m` rows (see `kernel_tables.pick`)."""
    return kernel_tables.pick(TABLE, m, DEFAULT_CONFIG)


def rows_limit() -> int:
    """The most rows the fused kernel takes; larger batches (prefill chunks) go to vLLM's."""
    return kernel_tables.rows_limit(TABLE, DEFAULT_ROWS_LIMIT)


_WORKSPACES: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}
"""Per device and rank: `buf` (float32) and the counters, all zero between calls."""


def _workspace(device: torch.device, rank: int, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    key = (str(device), rank)
    ws = _WORKSPACES.get(key)
    need = max(rows, rows_limit())
    if ws is None or ws[0].numel() < 3 * need * rank:
        ws = (
            torch.zeros(3 * need * rank, dtype=torch.float32, device=device),
            torch.zeros(4 + 3 * need, dtype=torch.int32, device=device),
        )
        _WORKSPACES[key] = ws
    return ws


_SLICES: dict[tuple[int, ...], dict[str, Any]] = {}
"""Per-layer lora_b slice tables, keyed by the tensors' addresses (see `lora_expand._SLICES`)."""

_A_SLICES: dict[tuple[int, ...], tuple[Any, tuple[int, int, int]]] = {}


def _a_slices(lora_a: list[torch.Tensor]) -> tuple[Any, tuple[int, int, int]]:
    key = tuple(w.data_ptr() for w in lora_a)
    found = _A_SLICES.get(key)
    if found is None:
        weights = [w.squeeze(1) if w.ndim == 4 else w for w in lora_a]
        strides = {w.stride() for w in weights}
        if len(strides) != 1 or any(w.ndim != 3 or not w.is_contiguous() for w in weights):
            raise ValueError("lora_a weights must be contiguous (slots, rank, K) of one stride")
        ptr: Any = (
            weights[0]
            if len(weights) == 1
            else torch.tensor([w.data_ptr() for w in weights], dtype=torch.uint64,
                              device=weights[0].device)
        )  # fmt: skip
        s0, s1, s2 = weights[0].stride()
        found = _A_SLICES[key] = (ptr, (s0, s1, s2))
    return found


def fused_lora(
    y: torch.Tensor,
    x: torch.Tensor,
    lora_a: list[torch.Tensor],
    lora_b: list[torch.Tensor],
    token_lora_mapping: torch.Tensor,
    no_lora_flag_cpu: torch.Tensor,
    scale: float = 1.0,
    add_inputs: bool = True,
    config: dict[str, int] | None = None,
) -> None:
    """`y[:, slice s] (+)= (scale * x @ A_s[slot(row)]^T) @ B_s[slot(row)]^T` for every row with
    a slot (>= 0), in one or two launches: vLLM's `add_lora_linear` at decode sizes.

    Args:
        y: (rows, sum of the slices' widths), bf16 or fp16, changed in place.
        x: (rows, K), the layer's input.
        lora_a: per slice, vLLM's stacked (slots, 1, rank, K) weights.
        lora_b: per slice, vLLM's stacked (slots, 1, N_s, rank) weights.
        token_lora_mapping: (rows,) int, each row's slot, -1 for none.
        no_lora_flag_cpu: vLLM's CPU flag: no row has an adapter.
        scale: multiplies the shrink (vLLM passes 1.0).
        add_inputs: add to `y` (else store the LoRA output alone).
        config: launch settings (default: the table's for this many rows).
    """
    if no_lora_flag_cpu.item():
        return
    m, k = x.shape
    key = (0, *(w.data_ptr() for w in lora_b))
    b = _SLICES.get(key)
    if b is None:
        b = _SLICES[key] = _slices(lora_b, 0)
    a_ptr, (a_d0, a_d1, a_d2) = _a_slices(lora_a)
    rank = b["rank"]
    if not supports_rank(rank):
        raise ValueError(f"the fused LoRA kernel takes power-of-two ranks, not {rank}")
    cfg = config or pick_config(m)
    num_cols = b["slots"] * rank
    bc_s = max(cfg["bc_s"], rank)
    bc_e = max(cfg["bc_e"], rank)
    slices = len(lora_b)
    buf, ctl = _workspace(x.device, rank, m)
    s_m_tiles = triton.cdiv(m, cfg["bm_s"])
    k_per = triton.cdiv(triton.cdiv(k, cfg["split_k"]), cfg["bk"]) * cfg["bk"]
    split_k = triton.cdiv(k, k_per)
    s_items = slices * s_m_tiles * split_k
    e_m_tiles = triton.cdiv(m, cfg["bm_e"])
    e_n_tiles = triton.cdiv(b["max_n"], cfg["bn"])
    e_items = slices * e_n_tiles * e_m_tiles
    args = (
        x, a_ptr, b["ptr"], y, token_lora_mapping, buf, ctl,
        b["start"], b["sizes"], b["d0"], b["d1"], b["d2"],
        m, k, num_cols, scale, x.stride(0), x.stride(1), a_d0, a_d1, a_d2, m * rank,
        y.stride(0), y.stride(1), s_items, s_items + e_items, s_m_tiles, k_per, e_n_tiles,
        e_m_tiles,
    )  # fmt: skip
    consts = {
        "BM_S": cfg["bm_s"], "BK": cfg["bk"], "BC_S": bc_s, "SPLIT_K": split_k,
        "BM_E": cfg["bm_e"], "BN": cfg["bn"], "BC_E": bc_e, "R": rank, "SLICE_NUM": slices,
        "SAME_STRIDE": b["same"], "ADD_INPUTS": add_inputs,
        # Triton 3.9's interpreter computes bf16 products and sums on the raw bits (values of
        # 1e10 where 7 is right): there the operands go to float32; the GPU multiplies in bf16
        "DOT_F32": x.dtype == torch.bfloat16 and os.environ.get("TRITON_INTERPRET") == "1",
        "num_warps": cfg["num_warps"], "num_stages": cfg["num_stages"],
    }  # fmt: skip
    if cfg["launches"] == 1:
        _fused_lora_kernel[(s_items + e_items,)](*args, PHASE=0, **consts)
    else:
        _fused_lora_kernel[(s_items,)](*args, PHASE=1, **consts)
        _fused_lora_kernel[(e_items,)](*args, PHASE=2, **consts)


def reference_lora(
    y: torch.Tensor,
    x: torch.Tensor,
    lora_a: list[torch.Tensor],
    lora_b: list[torch.Tensor],
    token_lora_mapping: torch.Tensor,
    scale: float = 1.0,
    add_inputs: bool = True,
) -> None:
    """The same computation in plain torch, with vLLM's roundings (a float32 shrink, its result
    cast to the weights' dtype, the product rounded before the add): the tests' reference."""
    col = 0
    for wa, wb in zip(lora_a, lora_b, strict=True):
        wa = wa.squeeze(1) if wa.ndim == 4 else wa
        wb = wb.squeeze(1) if wb.ndim == 4 else wb
        n = wb.size(1)
        for row, slot in enumerate(token_lora_mapping.tolist()):
            if slot < 0:
                prod = torch.zeros(n, dtype=y.dtype, device=y.device)
            else:
                buf = (x[row].float() @ wa[slot].float().T) * scale
                prod = (buf.to(wb.dtype).float() @ wb[slot].float().T).to(y.dtype)
            if add_inputs:
                prod = prod + y[row, col : col + n]
            y[row, col : col + n] = prod
        col += n

"""Issue 22's open lead: the LoRA expand in the base GEMM's epilogue, as a probe (not served).

`lora_kernels: concat` adds the LoRA after the base GEMM: cuBLAS writes the base output (with
every slot's shrink in extra columns), then a Triton expand reads it again and writes the sum.
On the H200 that second pass and its launch cost about 0.9 ms of a decode step at 128 rows even
with no adapter in the batch (docs/benchmarks.md). Here the base GEMM is a Triton kernel of its
own whose epilogue adds each row's own slot's shrink times B (the same per-tile slot skip as the
served expand) before the one store:

    h   = x @ A_all^T                       # cuBLAS: every slot's shrink (small)
    out = x @ W^T + h[own slot] @ B[own slot]   # one Triton kernel: GEMM, then the LoRA epilogue

What it answers: can a Triton GEMM keep up with cuBLAS at decode sizes (M <= 128), and what does
the whole layer then cost against cuBLAS's base GEMM and against the served `concat` layer? Shapes
are Llama-3-8B's (bench/gpu/dense_lora_step.py's `Layer`), bf16, CUDA graphs; `--sweep` times the
GEMM's launch settings first and uses the best for the fused rows. The fused output is checked
against a per-token reference.

  PYTHONPATH=src python3 bench/gpu/fused_epilogue.py --out DIR [--tokens 64 128] [--sweep]
  TRITON_INTERPRET=1 python3 bench/gpu/fused_epilogue.py --tiny   # CPU check in the interpreter
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from functools import partial
from pathlib import Path

import torch
import triton
import triton.language as tl

_spec = importlib.util.spec_from_file_location(
    "dense_lora_step", Path(__file__).resolve().parent / "dense_lora_step.py"
)
assert _spec is not None
assert _spec.loader is not None
dls = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dls)
lora_concat = dls.lora_concat  # loramux's concat layers (`src` on PYTHONPATH)
_add_own_slots = lora_concat._add_own_slots


@triton.jit
def _gemm_lora_kernel(
    x_ptr,  # [M, K]
    w_ptr,  # [N, K] the base weight, output-major (as F.linear takes it)
    h_ptr,  # [M, slices * S * R] every slot's shrink (HAS_LORA)
    b_ptr,  # [S * R, N] every column's slice's B per slot (ConcatState.b)
    slots_ptr,  # [>= M] each row's slot, -1 for none
    out_ptr,  # [M, N]
    M,
    N,
    K,
    S,
    R,
    START1,
    START2,
    x_d0,
    w_d0,
    h_d0,
    b_d0,
    out_d0,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_R: tl.constexpr,
    SLOTS: tl.constexpr,
    NUM_SLICES: tl.constexpr,
    HAS_LORA: tl.constexpr,
):
    pid_n = tl.program_id(axis=0)
    pid_m = tl.program_id(axis=1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < M
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < N
    ks = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):  # K is a multiple of BLOCK_K (checked by the caller)
        xk = tl.load(x_ptr + rows[:, None] * x_d0 + (k0 + ks)[None, :], mask=row_ok[:, None])
        wk = tl.load(w_ptr + cols[None, :] * w_d0 + (k0 + ks)[:, None], mask=col_ok[None, :])
        acc = tl.dot(xk, wk, acc)
    # the base output rounded once, as cuBLAS writes it, then the LoRA in float32
    acc = acc.to(out_ptr.dtype.element_ty).to(tl.float32)
    if HAS_LORA:  # the served expand's own loop: each row's slot, unused slots skipped
        slot = tl.load(slots_ptr + rows, mask=row_ok, other=-1).to(tl.int32)
        acc = _add_own_slots(
            acc, h_ptr, h_d0, b_ptr, b_d0, rows, row_ok, slot, cols, col_ok, pid_n * BLOCK_N,
            N, S, R, START1, START2, BLOCK_N, BLOCK_R, SLOTS, NUM_SLICES,
        )  # fmt: skip
    ok = row_ok[:, None] & col_ok[None, :]
    tl.store(out_ptr + rows[:, None] * out_d0 + cols[None, :], acc.to(out_ptr.dtype.element_ty), ok)


DEFAULT = {"block_n": 64, "block_k": 128, "num_warps": 4, "num_stages": 4}
SWEEP = [
    {"block_n": bn, "block_k": bk, "num_warps": w, "num_stages": st}
    for bn in (32, 64, 128)
    for bk in (64, 128)
    for w, st in ((4, 3), (4, 5), (8, 4))
]


def gemm_lora(x, state, slots, cfg, lora: bool = True) -> torch.Tensor:
    """One layer: `x @ W^T` plus (when `lora`) each row's own slot's LoRA, from a ConcatState."""
    m, k = x.shape
    n = state.out
    assert k % cfg["block_k"] == 0, "K must be a multiple of block_k"
    out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    h = torch.nn.functional.linear(x, state.wide[n:]) if lora else x
    starts = list(state.starts)
    bounds = [*starts[1:], n, n][:2]
    block_m = max(16, triton.next_power_of_2(min(m, 128)))
    block_r = max(16, triton.next_power_of_2(state.rank))
    grid = (triton.cdiv(n, cfg["block_n"]), triton.cdiv(m, block_m))
    _gemm_lora_kernel[grid](
        x, state.wide, h, state.b, slots, out, m, n, k, state.max_loras, state.rank,
        bounds[0], bounds[1], x.stride(0), state.wide.stride(0), h.stride(0), state.b.stride(0),
        out.stride(0), BLOCK_M=block_m, BLOCK_N=cfg["block_n"], BLOCK_K=cfg["block_k"],
        BLOCK_R=block_r, SLOTS=max(1, 128 // block_r), NUM_SLICES=len(starts), HAS_LORA=lora,
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )  # fmt: skip
    return out


def run(states, xs, slot, cfg, lora) -> None:
    for layer in states:
        for n, st in layer.items():
            gemm_lora(xs[n], st, slot, cfg, lora)


def served(states, xs, slot) -> None:
    for layer in states:
        for n, st in layer.items():
            lora_concat.concat_linear(
                xs[n], st.wide, st.b, slot, None, st.out, list(st.starts), st.rank
            )


def check(layer, state, x, slot, cfg) -> float:
    """Largest |fused - reference| over one layer's output, relative to the output's size."""
    got = gemm_lora(x, state, slot, cfg).float()
    want = (x.float() @ layer.w.float()).to(x.dtype).float() + layer.reference(x, slot)
    return ((got - want).abs().max() / max(1.0, want.abs().max().item())).item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out")
    p.add_argument("--tokens", type=int, nargs="+", default=[64, 128])
    p.add_argument("--slots", type=int, default=16)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--sweep", action="store_true", help="time the GEMM's launch settings first")
    p.add_argument("--tiny", action="store_true", help="CPU check: small shapes, interpreter")
    args = p.parse_args()
    gpu = torch.cuda.is_available() and not args.tiny
    kw = {"device": "cuda" if gpu else "cpu", "dtype": torch.bfloat16 if gpu else torch.float16}
    linears = dls.LINEARS
    cfg = dict(DEFAULT)
    if args.tiny:
        linears = {"qkv": (64, (64, 16, 16)), "o": (64, (64,)), "gate_up": (64, (64, 64))}
        args.layers, args.tokens, args.slots, args.iters = 1, [24], 4, 1
        cfg = {"block_n": 32, "block_k": 32, "num_warps": 4, "num_stages": 1}
    torch.manual_seed(0)
    layers = [
        {n: dls.Layer(d, o, args.slots, args.rank, **kw) for n, (d, o) in linears.items()}
        for _ in range(args.layers)
    ]
    states = [{n: L.serve_state() for n, L in layer.items()} for layer in layers]
    rows = []
    for tokens in args.tokens:
        xs = {n: torch.randn(tokens, d, **kw) for n, (d, _) in linears.items()}
        slot = torch.arange(tokens, device=kw["device"]) % args.slots
        slot[::8] = -1
        none = torch.full_like(slot, -1)
        errs = {n: check(layers[0][n], states[0][n], xs[n], slot, cfg) for n in linears}
        print(f"tokens {tokens}: max |fused - reference| / max |reference| {errs}", flush=True)
        assert max(errs.values()) < 2e-2, "the fused GEMM + LoRA differs from the reference"
        if not gpu:
            rows.append({"tokens": tokens, "errors": errs})
            continue
        timed = partial(dls.timed, graphs=True, iters=args.iters)
        row: dict = {"tokens": tokens, "errors": errs, "sweep": []}
        row["cublas_base_ms"] = timed(partial(dls.base_step, states, xs))
        if args.sweep:
            for c in SWEEP:
                try:
                    ms = timed(partial(run, states, xs, none, c, False))
                except Exception as e:  # noqa: BLE001 - a setting that does not fit is skipped
                    print(f"  sweep {c}: failed ({type(e).__name__})", flush=True)
                    continue
                row["sweep"].append({**c, "ms": ms})
                print(f"  sweep {c}: {ms:.3f} ms (cuBLAS {row['cublas_base_ms']:.3f})", flush=True)
            cfg = min(row["sweep"], key=lambda r: r["ms"])
            cfg = {k: v for k, v in cfg.items() if k != "ms"}
        row["config"] = cfg
        row["triton_base_ms"] = timed(partial(run, states, xs, none, cfg, False))
        row["fused_mixed_ms"] = timed(partial(run, states, xs, slot, cfg, True))
        row["fused_none_ms"] = timed(partial(run, states, xs, none, cfg, True))
        row["served_mixed_ms"] = timed(partial(served, states, xs, slot))
        row["served_none_ms"] = timed(partial(served, states, xs, none))
        rows.append(row)
        b = row["cublas_base_ms"]
        print(
            f"tokens {tokens:>4}: cuBLAS base {b:6.3f} ms; Triton base {row['triton_base_ms']:6.3f}"
            f"; fused mixed {row['fused_mixed_ms']:6.3f} (+{row['fused_mixed_ms'] - b:.3f}), "
            f"none {row['fused_none_ms']:6.3f}; served concat mixed {row['served_mixed_ms']:6.3f}"
            f" (+{row['served_mixed_ms'] - b:.3f}), none {row['served_none_ms']:6.3f}; {cfg}",
            flush=True,
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name() if gpu else "cpu"
    (out / "fused_epilogue.json").write_text(json.dumps({"device": name, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

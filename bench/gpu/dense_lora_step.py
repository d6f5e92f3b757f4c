"""One decode step's multi-LoRA work as dense GEMMs over every adapter slot (issue 22's next lead).

vLLM's punica kernels (and loramux's masked and fused ones) gather each token's adapter: many small
Triton programs per linear layer. This measures the other way round, with nothing but cuBLAS:

    h  = x @ A_all            # every slot's shrink at once: [T, in] @ [in, slices * slots * rank]
    h *= onehot(slot)         # keep each token's own slot (a token without an adapter keeps none)
    y += h @ B_blockdiag      # every slot's expand at once, slices side by side

and "concat", where the shrink rides in the base GEMM: [y | h] = x @ [W | A_all], then the mask
and the expand (two launches per linear layer besides the base GEMM, which grows by the slots'
columns).

Three launches per linear layer, as vLLM's zero + shrink + expand, but each a full-width GEMM that
reads every slot's weights once (all slots, used or not: the cost grows with max_loras, not with
the adapters a batch uses). Shapes are Llama-3-8B's (32 layers; qkv, o, gate_up, down), bf16,
steps captured in CUDA graphs and replayed. Prints ms per decode step for the base model's linear
layers, the dense LoRA alone, and both, next to the weight-read floor, and checks the dense result
against a per-token reference.

"serve" is what `lora_kernels: concat` runs on a GPU (serve/lora_concat.py, with `src` on
PYTHONPATH and triton installed): the same wide GEMM, then its Triton expand, which adds each
token's own slot's B only and skips the slots no row of a tile uses; timed against the base
weights' own `F.linear` (output-major, as vLLM serves them) with tokens spread over every slot
("mixed"), in runs of 64 tokens per slot as in a prefill chunk ("runs"), and with no adapter at
all ("none"). `--sweep` times the kernel's launch settings at each batch size.

  PYTHONPATH=src python3 bench/gpu/dense_lora_step.py --out DIR [--tokens 128 --slots 16]
  python3 bench/gpu/dense_lora_step.py --tiny      # CPU smoke test: small shapes, no graphs
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import torch

try:  # the serving path: loramux's concat layers (needs `src` on PYTHONPATH and triton)
    from loramux.serve import lora_concat
except ImportError:  # pragma: no cover - the bench without the package
    lora_concat = None  # type: ignore[assignment]

LINEARS = {  # name: (input size, output slices)
    "qkv": (4096, (4096, 1024, 1024)),
    "o": (4096, (4096,)),
    "gate_up": (4096, (14336, 14336)),
    "down": (14336, (4096,)),
}


class Layer:
    """One linear layer's base weight and every slot's LoRA weights in the dense layouts."""

    def __init__(self, d_in: int, outs: tuple[int, ...], slots: int, rank: int, **kw) -> None:
        self.d_in, self.outs, self.slots, self.rank = d_in, outs, slots, rank
        n, width = len(outs), sum(outs)
        self.w = torch.randn(d_in, width, **kw) / d_in**0.5
        self.a = torch.randn(n, slots, rank, d_in, **kw) / d_in**0.5  # vLLM's lora_a layout
        self.b = [torch.randn(slots, o, rank, **kw) / rank for o in outs]  # vLLM's lora_b layout
        # dense layouts: A_all [in, n * slots * rank]; B block-diagonal [n * slots * rank, width]
        self.a_all = self.a.reshape(n * slots * rank, d_in).t().contiguous()
        # "concat": the base weight with every slot's A as extra columns, so the base GEMM
        # does the shrink too (one wider GEMM, no shrink launch)
        self.w_a = torch.cat([self.w, self.a_all], dim=1).contiguous()
        self.width = width
        self.b_bd = torch.zeros(n * slots * rank, width, **kw)
        col = 0
        for i, (o, b) in enumerate(zip(outs, self.b, strict=True)):
            rows = slice(i * slots * rank, (i + 1) * slots * rank)
            self.b_bd[rows, col : col + o] = b.permute(0, 2, 1).reshape(slots * rank, o)
            col += o

    def serve_state(self):
        """The layer as `lora_kernels: concat` holds it (serve/lora_concat.py's ConcatState)."""
        n, slots, rank = len(self.outs), self.slots, self.rank
        b = torch.cat([bi.permute(0, 2, 1).reshape(slots * rank, o) for bi, o in
                       zip(self.b, self.outs, strict=True)], dim=1).contiguous()  # fmt: skip
        return lora_concat.ConcatState(
            wide=torch.cat([self.w.t(), self.a.reshape(n * slots * rank, self.d_in)]).contiguous(),
            out=self.width, packed=False, b=b,
            starts=tuple(sum(self.outs[:i]) for i in range(n)),
            n_slices=n, max_loras=slots, rank=rank,
            slot_ids=torch.arange(slots, device=self.w.device),
        )  # fmt: skip

    def reference(self, x: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        """Per-token LoRA delta in float32 (slot -1: none)."""
        out = torch.zeros(x.shape[0], sum(self.outs), dtype=torch.float32, device=x.device)
        for t in range(x.shape[0]):
            s = int(slot[t])
            if s < 0:
                continue
            col = 0
            for i, o in enumerate(self.outs):
                h = x[t].float() @ self.a[i, s].float().t()
                out[t, col : col + o] = h @ self.b[i][s].float().t()
                col += o
        return out


def onehot(slot: torch.Tensor, slices: int, slots: int, rank: int, dtype) -> torch.Tensor:
    """[T, slices * slots * rank] mask: 1 on each token's own slot, in every slice."""
    m = torch.zeros(slot.shape[0], slots, dtype=dtype, device=slot.device)
    keep = slot >= 0
    m[keep.nonzero().squeeze(1), slot[keep]] = 1
    return m[:, None, :, None].expand(-1, slices, -1, rank).reshape(slot.shape[0], -1).contiguous()


def dense_delta(layer: Layer, x: torch.Tensor, mask: torch.Tensor, y: torch.Tensor) -> None:
    h = x @ layer.a_all
    h.mul_(mask)
    y.addmm_(h, layer.b_bd)


def concat_step(layer: Layer, x: torch.Tensor, mask: torch.Tensor, wide: torch.Tensor) -> None:
    """Base output plus LoRA delta: x @ [W | A_all] (one GEMM), mask, expand into the base part."""
    torch.matmul(x, layer.w_a, out=wide)
    h = wide[:, layer.width :] * mask
    wide[:, : layer.width].addmm_(h, layer.b_bd)


def serve_step(states: list, xs: dict, slot: torch.Tensor) -> None:
    """One decode step's linear layers as `lora_kernels: concat` serves them."""
    for layer in states:
        for n, state in layer.items():
            lora_concat.concat_forward(xs[n], state, slot)


def base_step(states: list, xs: dict) -> None:
    """The base model's linear layers as vLLM serves them: `F.linear` on the output-major base
    weight (the wide weight's first rows)."""
    for layer in states:
        for n, state in layer.items():
            torch.nn.functional.linear(xs[n], state.wide[: state.out])


SWEEP = [
    {"block_m": bm, "block_n": bn, "slots": sl, "num_warps": w, "num_stages": st}
    for bm in (None, 128)  # None: pick_config's row tile for the batch
    for bn in (64, 128)
    for sl in (4, 8)
    for w, st in ((4, 2), (8, 2), (8, 3))
]


def step(kind: str, layers: list, xs: dict, ys: dict, masks: dict, wides: dict) -> None:
    """One decode step's linear layers: base, lora (dense, alone), both, or concat."""
    for layer in layers:
        for n, L in layer.items():
            if kind in ("base", "both"):
                torch.matmul(xs[n], L.w, out=ys[n])
            if kind in ("lora", "both"):
                dense_delta(L, xs[n], masks[n], ys[n])
            if kind == "concat":
                concat_step(L, xs[n], masks[n], wides[n])


def sweep(states: list, xs: dict, slot: torch.Tensor, tokens: int, iters: int) -> list:
    """ms per step of the serve path for each launch setting in SWEEP (mixed slots)."""
    default = lora_concat.pick_config
    out = []
    try:
        for cfg in SWEEP:
            if (cfg["block_m"] or 0) > max(16, 1 << (tokens - 1).bit_length()):
                continue  # a row tile larger than the batch
            full = {**cfg, "block_m": cfg["block_m"] or default(tokens)["block_m"]}
            lora_concat.pick_config = lambda m, rank=16, full=full: full  # type: ignore[assignment]
            try:
                ms = timed(partial(serve_step, states, xs, slot), True, iters)
            except Exception as e:  # noqa: BLE001 - a setting that does not compile is skipped
                print(f"  sweep {full}: failed ({type(e).__name__})", flush=True)
                continue
            out.append({**full, "ms": ms})
            print(f"  sweep {full}: {ms:.3f} ms", flush=True)
    finally:
        lora_concat.pick_config = default
    return out


def timed(fn, graphs: bool, iters: int) -> float:
    """ms per call: CUDA-graph replay on a GPU, plain calls on the CPU."""
    if not graphs:
        fn()
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        return 1000 * (time.perf_counter() - t0) / iters
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    g.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        g.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out")
    p.add_argument("--tokens", type=int, nargs="+", default=[16, 64, 128])
    p.add_argument("--slots", type=int, nargs="+", default=[16, 64])
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--tiny", action="store_true", help="CPU smoke test: small shapes, 2 layers")
    p.add_argument("--sweep", action="store_true", help="time the serve kernel's launch settings")
    args = p.parse_args()
    gpu = torch.cuda.is_available() and not args.tiny
    dev = "cuda" if gpu else "cpu"
    dtype = torch.bfloat16 if gpu else torch.float32
    linears = LINEARS
    if args.tiny:
        linears = {"qkv": (64, (64, 16, 16)), "o": (64, (64,)), "gate_up": (64, (128, 128))}
        linears["down"] = (128, (64,))
        args.layers, args.tokens, args.slots, args.iters = 2, [8], [4], 3
    kw = {"device": dev, "dtype": dtype}
    rows, checks = [], []
    torch.manual_seed(0)
    for slots in args.slots:
        layers = [
            {n: Layer(d, o, slots, args.rank, **kw) for n, (d, o) in linears.items()}
            for _ in range(args.layers)
        ]
        lora_bytes = sum(
            (L.a_all.numel() + sum(b.numel() for b in L.b)) * L.a_all.element_size()
            for layer in layers
            for L in layer.values()
        )
        for tokens in args.tokens:
            xs = {n: torch.randn(tokens, d, **kw) for n, (d, _) in linears.items()}
            ys = {n: torch.zeros(tokens, sum(o), **kw) for n, (_, o) in linears.items()}
            # mixed: tokens spread over every slot in turn, one in eight without an adapter
            slot = torch.arange(tokens, device=dev) % slots
            slot[::8] = -1
            masks = {
                n: onehot(slot, len(o), slots, args.rank, dtype) for n, (_, o) in linears.items()
            }

            wides = {n: torch.zeros(tokens, L.w_a.shape[1], **kw) for n, L in layers[0].items()}
            bufs = (layers, xs, ys, masks, wides)
            t_base, t_lora, t_both, t_cat = (
                timed(partial(step, kind, *bufs), gpu, args.iters)
                for kind in ("base", "lora", "both", "concat")
            )
            serve = {}
            if lora_concat is not None:
                states = [{n: L.serve_state() for n, L in layer.items()} for layer in layers]
                patterns = {
                    "mixed": slot,
                    "runs": (torch.arange(tokens, device=dev) // 64) % slots,
                    "none": torch.full((tokens,), -1, device=dev, dtype=slot.dtype),
                }
                serve["base"] = timed(partial(base_step, states, xs), gpu, args.iters)
                for pat, sl in patterns.items():
                    serve[pat] = timed(partial(serve_step, states, xs, sl), gpu, args.iters)
                # the served output against base + the per-token reference, qkv of layer 0
                L, st = layers[0]["qkv"], states[0]["qkv"]
                got = lora_concat.concat_forward(xs["qkv"], st, slot).float()
                want = (xs["qkv"].float() @ L.w.float()).to(dtype).float()
                want += L.reference(xs["qkv"], slot)
                serve["max_abs_err"] = (got - want).abs().max().item()
                assert serve["max_abs_err"] <= 2e-2 * max(1.0, want.abs().max().item()), (
                    f"the served concat output differs by {serve['max_abs_err']:.3e}"
                )
                if args.sweep and gpu:
                    serve["sweep"] = sweep(states, xs, slot, tokens, args.iters)
                del states
            row = {
                "tokens": tokens,
                "slots": slots,
                "rank": args.rank,
                "base_ms": t_base,
                "dense_lora_ms": t_lora,
                "base_plus_lora_ms": t_both,
                "concat_ms": t_cat,
                "serve_ms": {k: v for k, v in serve.items() if k not in ("sweep", "max_abs_err")},
                "serve_max_abs_err": serve.get("max_abs_err"),
                "serve_sweep": serve.get("sweep"),
                "lora_weights_gb": lora_bytes / 1e9,
                "launches_per_step": 3 * len(linears) * args.layers,
            }
            rows.append(row)
            print(
                f"tokens {tokens:>4} slots {slots:>3}: base linears {t_base:6.3f} ms, dense LoRA "
                f"{t_lora:6.3f} ms, both {t_both:6.3f} ms (x{t_base / t_both:.3f} of base), concat "
                f"{t_cat:6.3f} ms (x{t_base / t_cat:.3f}); "
                f"all slots' weights {lora_bytes / 1e9:.2f} GB",
                flush=True,
            )
            if serve:
                t_served = serve["base"]
                print(
                    "  serve (Triton expand): "
                    + ", ".join(
                        f"{k} {serve[k]:6.3f} ms (x{t_served / serve[k]:.3f})"
                        for k in ("mixed", "runs", "none")
                    )
                    + f" of base F.linear {t_served:6.3f} ms; max |served - reference| "
                    f"{serve['max_abs_err']:.3e}",
                    flush=True,
                )
            # correctness: one layer, dense delta vs the per-token reference
            L = layers[0]["qkv"]
            y = torch.zeros(tokens, sum(L.outs), **kw)
            dense_delta(L, xs["qkv"], masks["qkv"], y)
            ref = L.reference(xs["qkv"], slot)
            err = (y.float() - ref).abs().max().item()
            scale = ref.abs().max().item()
            checks.append({"tokens": tokens, "slots": slots, "max_abs_err": err, "ref_max": scale})
            print(f"  check qkv: max |dense - reference| {err:.3e} (reference max {scale:.2f})")
            assert err <= 2e-2 * max(1.0, scale), "dense LoRA delta differs from the reference"
            wide = torch.zeros(tokens, L.w_a.shape[1], **kw)
            concat_step(L, xs["qkv"], masks["qkv"], wide)
            base_out = (xs["qkv"].float() @ L.w.float()).to(dtype).float()
            err_cat = (wide[:, : L.width].float() - base_out - ref).abs().max().item()
            checks[-1]["concat_max_abs_err"] = err_cat
            print(f"  check concat: max |(base + delta) - reference| {err_cat:.3e}")
            assert err_cat <= 2e-2 * max(1.0, base_out.abs().max().item()), "concat differs"
        del layers
        if gpu:
            torch.cuda.empty_cache()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name() if gpu else "cpu"
    (out / "dense_lora_step.json").write_text(
        json.dumps({"device": name, "rows": rows, "checks": checks}, indent=1)
    )


if __name__ == "__main__":
    main()

"""vLLM's multi-LoRA Triton kernels at an 8B model's shapes: time them, tune their launch configs.

Runs ON the lent GPU machine (vLLM 0.26.0 installed). Two parts:

  python bench/gpu/lora_kernels.py tune --out DIR   # = loramux kernels tune --out DIR
  python bench/gpu/lora_kernels.py step --configs DIR
  python bench/gpu/lora_kernels.py masked --configs DIR --out DIR

- tune: `loramux kernels tune` (src/loramux/serve/kernel_tune.py): vLLM's shrink/expand tables
  and loramux's masked/fused ones for this GPU, into one kernel table folder.
- step: one decode step's LoRA work (32 layers x 4 layers x shrink + expand, batch 128) in one
  CUDA graph, for 1 adapter and 16 mixed, with vLLM's default configs and with `--configs`; and
  the base model's linear layers of the same step, for scale.

- masked: loramux's masked expand (src/loramux/serve/lora_expand.py) against vLLM's expand
  (with `--configs`): a small grid of its launch configs at decode and prefill token counts, its
  output against vLLM's at every shape, and one decode step (vLLM's shrink + either expand).
  Writes `masked_expand.json` (a kernel table folder's; bench/gpu/kernels22.py measures fused).

Rank 16, bf16, max_loras 16 (the benchmark of issue 6).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from loramux.serve.kernel_cases import base_step_ms, graph_time, parse_shape, step_ms

RANK = 16
MAX_LORAS = 16
LAYERS = 32
MODULES: dict[str, tuple[int, list[int]]] = {
    # name: (input features, output slices)
    "qkv": (4096, [4096, 1024, 1024]),
    "o": (4096, [4096]),
    "gate_up": (4096, [14336, 14336]),
    "down": (14336, [4096]),
}
SHAPE = parse_shape("8b")  # the same layers as MODULES
TOKENS = (16, 64, 128, 256, 1024, 4096)
"""Token counts tuned: decode batches (CUDA-graph sizes) and prefill chunks."""
MIXES = (1, 16)
"""Adapters among the tokens: one, and 16 in turn."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Case:
    """Tensors for one LoRA'd layer at `tokens` tokens spread over `mix` adapters."""

    def __init__(self, module: str, tokens: int, mix: int, layers: int = 1) -> None:
        import torch
        from vllm.lora.ops.triton_ops import LoRAKernelMeta

        dev = torch.device("cuda")
        k, slices = MODULES[module]
        self.slices = slices
        self.x = torch.randn(tokens, k, dtype=torch.bfloat16, device=dev)
        self.y = torch.zeros(tokens, sum(slices), dtype=torch.bfloat16, device=dev)
        self.a = [
            [
                torch.randn(MAX_LORAS, RANK, k, dtype=torch.bfloat16, device=dev) * 0.01
                for _ in slices
            ]
            for _ in range(layers)
        ]
        self.b = [
            [
                torch.randn(MAX_LORAS, n, RANK, dtype=torch.bfloat16, device=dev) * 0.01
                for n in slices
            ]
            for _ in range(layers)
        ]
        self.meta = LoRAKernelMeta.make(MAX_LORAS, tokens, device=dev)
        mapping = torch.arange(tokens, device=dev, dtype=torch.int32) % mix
        self.meta.prepare_tensors(mapping)
        self.args = self.meta.meta_args(tokens, False)

    def buffer(self) -> Any:
        import torch

        return torch.empty(
            len(self.slices), self.x.shape[0], RANK, dtype=torch.float32, device=self.x.device
        )

    def shrink(self, buf: Any, layer: int = 0) -> None:
        from vllm.lora.ops.triton_ops import lora_shrink

        lora_shrink(self.x, self.a[layer], buf, *self.args, 1.0)

    def expand(self, buf: Any, layer: int = 0) -> None:
        from vllm.lora.ops.triton_ops import lora_expand

        lora_expand(buf, self.b[layer], self.y, *self.args, offset_start=0, add_inputs=True)

    def masked(self, buf: Any, layer: int = 0, config: dict | None = None) -> None:
        from loramux.serve.lora_expand import masked_expand

        mapping, *_, no_lora, _ = self.args
        masked_expand(buf, self.b[layer], self.y, mapping, no_lora, add_inputs=True, config=config)


# -- tune ----------------------------------------------------------------------------------------


def tune(args: argparse.Namespace) -> None:
    """`loramux kernels tune` (src/loramux/serve/kernel_tune.py) into --out."""
    from loramux.serve.kernel_tune import TuneOptions
    from loramux.serve.kernel_tune import tune as tune_tables

    opts = TuneOptions(out=Path(args.out).resolve(), quick=args.quick, workers=args.workers)
    tune_tables(opts, log)


# -- step ----------------------------------------------------------------------------------------


def step(args: argparse.Namespace) -> None:
    import torch
    from vllm.lora.ops.triton_ops import utils as op_utils

    rows: list[tuple[str, float, float]] = []
    base = {t: base_step_ms(SHAPE, t, LAYERS) for t in args.tokens}
    results: dict[str, Any] = {"base_linear_ms": base}
    for label, folder in (("vLLM default configs", None), ("tuned configs", args.configs)):
        if label == "tuned configs" and not folder:
            continue
        if folder:
            os.environ["VLLM_TUNED_CONFIG_FOLDER"] = str(Path(folder).resolve())
            os.environ["LORAMUX_KERNEL_FOLDER_IN_USE"] = str(Path(folder).resolve())
        else:
            os.environ.pop("VLLM_TUNED_CONFIG_FOLDER", None)
            os.environ["LORAMUX_KERNEL_FOLDER_IN_USE"] = ""
        op_utils.load_lora_op_config.cache_clear()
        op_utils.get_lora_op_configs.cache_clear()
        for tokens in args.tokens:
            one = step_ms(SHAPE, "vllm", tokens, 1, LAYERS)
            mixed = step_ms(SHAPE, "vllm", tokens, 16, LAYERS)
            rows.append((f"{label}, {tokens} tokens", one, mixed))
            results[f"{label}/{tokens}"] = {"one_ms": one, "mixed16_ms": mixed}
            torch.cuda.empty_cache()
    print()
    print(
        f"LoRA kernels of one step, {LAYERS} layers x (qkv, o, gate_up, down), rank {RANK}, "
        f"max_loras {MAX_LORAS}, {torch.cuda.get_device_name()}"
    )
    for t, ms in base.items():
        print(f"  base model's linear layers, {t} tokens: {ms:.3f} ms")
    print(f"{'':40} {'1 adapter':>12} {'16 mixed':>12}")
    for label, one, mixed in rows:
        print(f"{label:40} {one:10.3f} ms {mixed:10.3f} ms")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "lora_step.json").write_text(json.dumps(results, indent=1))


# -- masked ----------------------------------------------------------------------------------------


def masked_space(tokens: int) -> list[dict[str, int]]:
    grid = (
        ((16, 32, 64), (32, 64, 128), (2, 4), (1, 2), (4,))
        if tokens <= 64
        else ((64, 128), (32, 64, 128), (2, 4), (1, 2), (4, 8))
        if tokens <= 256
        else ((64, 128), (64, 128, 256), (2, 4), (2, 3), (4, 8))
    )
    return [
        {"block_m": bm, "block_n": bn, "slots": sl, "num_stages": st, "num_warps": w}
        for bm, bn, sl, st, w in itertools.product(*grid)
        if not (bm == 128 and bn == 256 and w == 4)  # too many registers
    ]


def masked_at(tokens: int) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """The fastest masked config at `tokens` (summed over layers and mixes), and per shape its
    time and output against vLLM's expand."""
    import torch

    cases = {(mod, mix): Case(mod, tokens, mix) for mod in MODULES for mix in MIXES}
    bufs = {key: c.buffer().normal_() for key, c in cases.items()}

    def timed(case: Case, buf: Any, config: dict | None, calls: int = 10) -> float:
        if config is None:
            return graph_time(lambda: case.expand(buf))
        return graph_time(lambda: case.masked(buf, config=config), calls=calls, replays=3)

    best, best_t = None, float("inf")
    space = masked_space(tokens)
    for config in space:
        try:
            t = sum(timed(c, bufs[k], config) for k, c in cases.items())
        except Exception as exc:  # a config that does not compile (registers, shared memory)
            log(f"  m={tokens} {config}: {type(exc).__name__}")
            continue
        if t < best_t:
            best, best_t = config, t
    assert best is not None
    log(f"m={tokens}: best of {len(space)} masked configs {best}")
    rows = []
    for (mod, mix), case in cases.items():
        buf = bufs[(mod, mix)]
        vllm_us, masked_us = timed(case, buf, None), timed(case, buf, best)
        outs = []
        for config in (None, best):
            case.y.normal_(generator=torch.Generator(device="cuda").manual_seed(1))
            case.expand(buf) if config is None else case.masked(buf, config=config)
            outs.append(case.y.float().clone())
        ref, got = outs
        diff = float(((got - ref).abs() / (ref.abs() + 1)).max())
        rows.append(
            {"module": mod, "tokens": tokens, "mix": mix, "vllm_us": vllm_us,
             "masked_us": masked_us, "max_rel_diff": diff}
        )  # fmt: skip
        log(
            f"expand {mod:7} m={tokens:5} {mix:2} adapters: vLLM {vllm_us:7.1f} us, "
            f"masked {masked_us:7.1f} us (x{vllm_us / masked_us:4.2f}), max diff {diff:.1e}"
        )
        if diff > 0.02:
            raise SystemExit(f"masked expand differs from vLLM's: {diff:.3f} ({mod}, m={tokens})")
    return best, rows


def masked(args: argparse.Namespace) -> None:
    import torch
    from vllm.lora.ops.triton_ops import utils as op_utils

    if args.configs:
        os.environ["VLLM_TUNED_CONFIG_FOLDER"] = str(Path(args.configs).resolve())
    op_utils.load_lora_op_config.cache_clear()
    op_utils.get_lora_op_configs.cache_clear()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table: dict[str, dict[str, int]] = {}
    rows: list[dict[str, Any]] = []
    for tokens in args.tokens:
        best, found = masked_at(tokens)
        table[str(tokens)] = best
        rows += found
        torch.cuda.empty_cache()
    file = out / "masked_expand.json"
    file.write_text(json.dumps({"gpu": torch.cuda.get_device_name(), "configs": table}, indent=1))
    os.environ["LORAMUX_KERNEL_FOLDER_IN_USE"] = str(out.resolve())
    steps = {}
    for tokens in args.step_tokens:
        for mix in MIXES:
            for label in ("vllm", "masked"):
                steps[f"{label}/{tokens}/{mix}"] = step_ms(SHAPE, label, tokens, mix, LAYERS)
    base = {t: base_step_ms(SHAPE, t, LAYERS) for t in args.step_tokens}
    print()
    print(f"one step's LoRA kernels (shrink: vLLM's, tuned configs: {bool(args.configs)}), "
          f"{torch.cuda.get_device_name()}")  # fmt: skip
    print(f"{'':34} {'1 adapter':>12} {'16 mixed':>12}")
    for tokens in args.step_tokens:
        print(f"base linear layers, {tokens} tokens: {base[tokens]:.3f} ms")
        for label in ("vllm", "masked"):
            one, mix16 = steps[f"{label}/{tokens}/1"], steps[f"{label}/{tokens}/16"]
            print(f"  {label + ' expand':32} {one:9.3f} ms {mix16:9.3f} ms")
    (out / "masked_report.json").write_text(
        json.dumps({"kernels": rows, "steps_ms": steps, "base_linear_ms": base}, indent=1)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("tune")
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    p.add_argument("--quick", action="store_true", help="small grids, about 3 minutes")
    p = sub.add_parser("step")
    p.add_argument("--configs", default=None, help="a folder of tuned configs (from `tune`)")
    p.add_argument("--tokens", type=int, nargs="+", default=[128])
    p.add_argument("--out", default=None)
    p = sub.add_parser("masked")
    p.add_argument("--configs", default=None, help="vLLM's tuned configs (for its kernels)")
    p.add_argument("--tokens", type=int, nargs="+", default=[16, 64, 128, 256, 1024, 4096])
    p.add_argument("--step-tokens", type=int, nargs="+", default=[128])
    p.add_argument("--out", required=True)
    args = parser.parse_args()
    {"tune": tune, "step": step, "masked": masked}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())

"""Issue 22 on the GPU: the fused multi-LoRA kernel checked against vLLM's, a quick tune, and
one decode step's LoRA time per kernel choice.

Runs ON the lent GPU machine (vLLM 0.26.0 installed); `bash bench/gpu/kernels.sh` runs the
stages in order, each time-boxed, each writing its own files:

  python bench/gpu/kernels22.py check --launches 2 --out DIR [--tokens N ...]  # vs vLLM's
  python bench/gpu/kernels22.py tune --out DIR [--budget-s 170] [--no-one-launch]
  python bench/gpu/kernels22.py step --tables FOLDER --out DIR

- check: every LoRA'd layer of a Llama-8B block (qkv 3 slices, o, gate_up 2, down), decode and
  prefill token counts, 1 adapter, 16 mixed, 16 mixed with every 4th row without one; the
  fused kernel (with `--launches` forced, and at prefill sizes too) and the op vLLM runs with
  `lora_kernels: fused` (which hands prefill sizes to vLLM's kernels) against vLLM's zero +
  shrink + expand. Pass: max |fused - vLLM| / max(1, |vLLM|) <= 1e-2 (bf16).
- tune: `loramux kernels tune --quick` into DIR/<GPU>/ (the folder to commit as the shipped
  table, src/loramux/serve/lora_kernels/<GPU>/).
- step: one decode step (batch 128, 32 layers x 4 layers) in one CUDA graph, 1 adapter and 16
  mixed: vLLM's kernels with default and tuned settings, tuned + masked, fused (the table's
  form) and fused forced to 1 and 2 launches; next to the base model's linear layers and the
  time to read the adapters' weights once at the measured copy bandwidth.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

TOKENS = (1, 16, 64, 128, 256, 512, 1024, 4096)
BOUND = 1e-2


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def use_tables(folder: Path | None) -> None:
    """Point vLLM's and loramux's kernels at `folder` (None: their defaults)."""
    from vllm.lora.ops.triton_ops import utils as op_utils

    if folder is None:
        os.environ.pop("VLLM_TUNED_CONFIG_FOLDER", None)
    else:
        os.environ["VLLM_TUNED_CONFIG_FOLDER"] = str(folder)
    os.environ["LORAMUX_KERNEL_FOLDER_IN_USE"] = str(folder or "")
    op_utils.load_lora_op_config.cache_clear()
    op_utils.get_lora_op_configs.cache_clear()


def installed_op(case: Any) -> None:
    """What vLLM runs with `lora_kernels: fused`: the worker's op (fused up to the table's rows,
    vLLM's shrink + expand above), called as the patched `add_lora_linear` calls it."""
    import loramux.serve.lora_fused_worker as worker

    worker._fused_op(case.y, case.x, case.a[0], case.b[0], *case.args, 1.0, True)


def check(args: argparse.Namespace) -> int:
    import torch

    from loramux.serve import lora_fused
    from loramux.serve.kernel_cases import Case, parse_shape

    use_tables(Path(args.tables) if args.tables else None)
    shape = parse_shape("8b")
    rows, worst = [], 0.0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def save(done: bool) -> None:
        verdict = {"gpu": torch.cuda.get_device_name(), "launches": args.launches,
                   "bound": BOUND, "complete": done, "worst": worst, "pass": worst <= BOUND,
                   "rows": rows}  # fmt: skip
        (out / f"check_launches{args.launches}.json").write_text(json.dumps(verdict, indent=1))

    for module, (k, slices) in shape.modules.items():
        for tokens in args.tokens:
            for mix, base_every in ((1, 0), (16, 0), (16, 4)):
                case = Case(k, slices, tokens, mix, base_every=base_every)
                ref = case.output("vllm")
                cfg = {**lora_fused.pick_config(tokens), "launches": args.launches}
                got = {"fused kernel": case.output("fused", cfg)}
                # the op as installed: the table's form up to its rows, vLLM's kernels above
                case.y.copy_(torch.linspace(-1, 1, case.y.numel(), device="cuda").view_as(case.y))
                installed_op(case)
                torch.cuda.synchronize()
                got["installed op"] = case.y.float().clone()
                for what, result in got.items():
                    diff = (result - ref).abs()
                    err = float((diff / ref.abs().clamp_min(1)).max())
                    row = {"module": module, "tokens": tokens, "adapters": mix,
                           "rows_without": bool(base_every), "path": what,
                           "launches": args.launches, "max_abs_err": float(diff.max()),
                           "max_err": err, "pass": err <= BOUND}  # fmt: skip
                    rows.append(row)
                    worst = max(worst, err)
                    log(
                        f"{what:12} {module:7} {tokens:5} tokens {mix:2} adapters"
                        f"{' +base rows' if base_every else '':11}: max abs err "
                        f"{row['max_abs_err']:.2e}, scaled {err:.2e} "
                        + ("ok" if row["pass"] else "FAIL")
                    )
                del case
            torch.cuda.empty_cache()
        save(False)
    save(True)
    log(f"fused ({args.launches} launch(es)) vs vLLM: worst {worst:.2e}: "
        f"{'PASS' if worst <= BOUND else 'FAIL'} at {BOUND}")  # fmt: skip
    return 0 if worst <= BOUND else 1


def tune(args: argparse.Namespace) -> int:
    import torch

    from loramux.serve.kernel_tables import device_slug
    from loramux.serve.kernel_tune import TuneOptions
    from loramux.serve.kernel_tune import tune as tune_tables

    folder = Path(args.out) / device_slug(torch.cuda.get_device_name())
    opts = TuneOptions(out=folder, quick=True, budget_s=args.budget_s, one_launch=args.one_launch)
    tune_tables(opts, log)
    return 0


def step(args: argparse.Namespace) -> int:
    import torch

    from loramux.serve import lora_fused
    from loramux.serve.kernel_cases import (
        base_step_ms,
        copy_bandwidth,
        lora_bytes,
        parse_shape,
        step_ms,
    )

    shape, layers, tokens = parse_shape("8b"), 32, args.tokens
    tables = Path(args.tables) if args.tables and Path(args.tables).is_dir() else None
    if args.tables and tables is None:
        log(f"no tables at {args.tables}: the tuned rows use the defaults")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"gpu": torch.cuda.get_device_name(), "tokens": tokens,
                               "tables": str(tables), "steps_ms": {}}  # fmt: skip

    def save() -> None:
        (out / "step.json").write_text(json.dumps(results, indent=1))

    bandwidth = copy_bandwidth()
    results["copy_bandwidth_gbs"] = bandwidth / 1e9
    results["base_linear_ms"] = base_step_ms(shape, tokens, layers)
    for mix in (1, 16):
        results[f"weights_floor_ms/{mix}"] = 1e3 * lora_bytes(shape, mix, 16, layers) / bandwidth
    save()
    variants: list[tuple[str, str, Path | None, int | None]] = [
        ("vLLM, default settings", "vllm", None, None),
        ("vLLM, tuned settings", "vllm", tables, None),
        ("tuned + masked expand", "masked", tables, None),
        ("fused (table's form)", "fused", tables, None),
        ("fused, 2 launches", "fused", tables, 2),
        ("fused, 1 launch", "fused", tables, 1),
    ]
    if not args.one_launch:
        variants = variants[:-1]
    for label, kind, folder, launches in variants:
        use_tables(folder)
        original = lora_fused.pick_config
        if launches is not None:

            def forced(m: int, _o: Any = original, _l: int = launches) -> dict[str, int]:
                return {**_o(m), "launches": _l}

            lora_fused.pick_config = forced
        try:
            for mix in (1, 16):
                ms = step_ms(shape, kind, tokens, mix, layers)
                results["steps_ms"][f"{label}/{mix}"] = ms
                log(f"{label:26} {mix:2} adapters: {ms:.3f} ms")
                save()
        except Exception:
            log(f"{label}: failed\n{traceback.format_exc()}")
        finally:
            lora_fused.pick_config = original
    steps = results["steps_ms"]
    lines = [
        f"One decode step's LoRA kernels, {tokens} tokens, 8B shape (32 layers x qkv/o/gate_up/"
        f"down), rank 16, 16 slots, CUDA graph, {results['gpu']}",
        f"{'':30} {'1 adapter':>11} {'16 mixed':>11}",
    ]
    for label, *_ in variants:
        one, mixed = steps.get(f"{label}/1"), steps.get(f"{label}/16")
        cell = [f"{v:8.3f} ms" if v is not None else "      -    " for v in (one, mixed)]
        lines.append(f"{label:30} {cell[0]:>11} {cell[1]:>11}")
    lines += [
        f"{'weights read once (floor)':30} {results['weights_floor_ms/1']:8.3f} ms "
        f"{results['weights_floor_ms/16']:8.3f} ms   ({bandwidth / 1e9:.0f} GB/s copy)",
        f"{'base model linear layers':30} {results['base_linear_ms']:8.3f} ms",
    ]
    table = "\n".join(lines)
    print("\n" + table, flush=True)
    (out / "step.txt").write_text(table + "\n")
    save()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("check")
    p.add_argument("--launches", type=int, choices=[1, 2], default=2)
    p.add_argument("--tokens", type=int, nargs="+", default=list(TOKENS))
    p.add_argument("--tables", default=None, help="a table folder (default: none, defaults)")
    p.add_argument("--out", required=True)
    p = sub.add_parser("tune")
    p.add_argument("--out", required=True)
    p.add_argument("--budget-s", type=float, default=170)
    p.add_argument("--one-launch", action=argparse.BooleanOptionalAction, default=True)
    p = sub.add_parser("step")
    p.add_argument("--tables", default=None)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--one-launch", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--out", required=True)
    args = parser.parse_args()
    return {"check": check, "tune": tune, "step": step}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())

"""Gathered LoRA against PEFT's loop: one decode step of a mixed batch, side by side.

  python bench/bench_gathered_lora.py                          # about 3 minutes on 2 cores
  python bench/bench_gathered_lora.py --batches 16:1 16:16 --slots 16 --steps 3   # 1 minute

The hf engine's model (SmolLM2-135M, float32) with `--slots` synthetic rank-8 adapters loaded as
the engine loads them (`AdapterSlots`, the demo adapters' shapes, random weights). Each batch of
ROWS rows over DISTINCT adapters (round robin; `--batches`) is prefilled with a `--context`-token
prompt; then `--steps` decode steps are timed with `engine.hf.lora_forward` `peft` (PEFT's
`adapter_names`: a loop over the distinct adapters in every LoRA layer) and `gathered`
(`serve/hf_gather.py`: the rows' A and B gathered by slot, two `bmm` per layer), interleaved with
the same step without adapters ("base": what LoRA costs on top), all from the same KV cache.
The table gives the fastest step of each (the 2 cores are shared: the fastest is the one least
slowed by other work; the medians are in `--json`) and output tok/s.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.bench_paging import make_adapters  # noqa: E402

from loramux.config import EngineConfig, load_config  # noqa: E402
from loramux.models import ensure_base_model  # noqa: E402
from loramux.serve.hf_load import load_base  # noqa: E402
from loramux.serve.hf_slots import AdapterSlots, lora_layers, new_peft_slot, read_weights  # noqa: E402
from loramux.types import AdapterRef  # noqa: E402

BASE = "__base__"


def step_ms(model: Any, slots: AdapterSlots, names: list[str], mode: str, start: Any) -> float:
    """One decode step of the batch from a copy of the prefilled state, in ms."""
    import torch

    cache, mask, last = start
    cache = copy.deepcopy(cache)
    mask = torch.cat([mask, torch.ones((mask.shape[0], 1), dtype=mask.dtype)], dim=1)
    positions = (mask.sum(-1, keepdim=True) - 1).long()
    slots.lora_forward = mode
    t0 = time.perf_counter()
    with slots.rows(names):
        model(
            input_ids=last,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
        )
    return 1000 * (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--batches",
        nargs="+",
        default=["16:1", "16:8", "16:16", "128:8", "128:32", "128:128"],
        help="ROWS:DISTINCT: a batch of ROWS rows over DISTINCT adapters (round robin)",
    )
    parser.add_argument("--slots", type=int, default=128)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    import torch

    cfg = load_config(REPO / "configs" / "default.yaml", environ={})
    base = load_base(ensure_base_model(cfg.model, cfg.paths.cache_dir), EngineConfig(), 2048)
    torch.set_num_threads(args.threads)
    slots = AdapterSlots(args.slots)
    state: dict[str, Any] = {"peft": None}

    def create(slot: str, adapter: AdapterRef) -> list[Any]:
        state["peft"] = new_peft_slot(base.model, state["peft"], slot, adapter)
        return lora_layers(state["peft"])

    results = []
    with tempfile.TemporaryDirectory(prefix="loramux-gather-") as tmp, torch.inference_mode():
        refs = make_adapters(Path(tmp), args.slots)
        for ref in refs:
            slots.load(state["peft"], ref, read_weights(ref.path), create)
        model = state["peft"].base_model.model
        names_of = [str(slots.get(r.key)) for r in refs]
        pairs = [tuple(int(v) for v in b.split(":")) for b in args.batches]
        for rows in dict.fromkeys(r for r, _ in pairs):
            gen = torch.Generator().manual_seed(0)
            ids = torch.randint(100, 20000, (rows, args.context), generator=gen)
            mask = torch.ones_like(ids)
            with slots.rows([BASE] * rows):
                out = model(input_ids=ids, attention_mask=mask, use_cache=True, logits_to_keep=1)
            start = (out.past_key_values, mask, out.logits[:, -1:].argmax(-1))
            for distinct in [d for r, d in pairs if r == rows and d <= min(rows, args.slots)]:
                names = [names_of[i % distinct] for i in range(rows)]
                runs = {"base": ([BASE] * rows, "peft"), "peft": (names, "peft"),
                        "gathered": (names, "gathered")}  # fmt: skip
                times: dict[str, list[float]] = {m: [] for m in runs}
                for batch, mode in runs.values():  # warm-up (the stacks are built on first use)
                    step_ms(model, slots, batch, mode, start)
                for _ in range(args.steps):  # interleaved: the three see the same machine load
                    for label, (batch, mode) in runs.items():
                        times[label].append(step_ms(model, slots, batch, mode, start))
                row = {
                    "rows": rows,
                    "distinct": distinct,
                    **{f"{m}_ms": min(t) for m, t in times.items()},
                    **{f"{m}_median_ms": statistics.median(t) for m, t in times.items()},
                }
                results.append(row)
                print(
                    f"{rows} rows, {distinct} adapters: base {row['base_ms']:.1f} ms, "
                    f"peft {row['peft_ms']:.1f} ms, gathered {row['gathered_ms']:.1f} ms",
                    flush=True,
                )
    print()
    print(
        f"SmolLM2-135M float32, {args.threads} threads, {args.slots} rank-8 adapters loaded, "
        f"one decode step after a {args.context}-token prefill; fastest of {args.steps}"
    )
    print("| rows | distinct adapters | base ms | PEFT loop ms | gathered ms | gathered vs PEFT "
          "| PEFT tok/s | gathered tok/s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['rows']} | {r['distinct']} | {r['base_ms']:.1f} | {r['peft_ms']:.1f} "
            f"| {r['gathered_ms']:.1f} | {r['peft_ms'] / r['gathered_ms']:.2f}x "
            f"| {1000 * r['rows'] / r['peft_ms']:.0f} | {1000 * r['rows'] / r['gathered_ms']:.0f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()

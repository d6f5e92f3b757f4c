"""Gathered LoRA against PEFT's loop: one decode step of a mixed batch, side by side.

  python bench/bench_gathered_lora.py                          # about 3 minutes on 2 cores
  python bench/bench_gathered_lora.py --rows 16 128 --distinct 1 8 16 32 128 --steps 8

The hf engine's model (SmolLM2-135M, float32) with `--slots` synthetic rank-8 adapters loaded as
the engine loads them (`AdapterSlots`, the demo adapters' shapes, random weights). For each batch
of `--rows` rows whose rows use `distinct` adapters (round robin), the batch is prefilled with a
`--context`-token prompt, then `--steps` decode steps are timed with `engine.hf.lora_forward`
`peft` (PEFT's `adapter_names`: a loop over the distinct adapters in every LoRA layer) and
`gathered` (`serve/hf_gather.py`: the rows' A and B gathered by slot, two `bmm` per layer),
alternating, from the same KV cache; median ms per step and output tok/s. "base": the same batch
with no adapter (what LoRA costs on top).
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
    parser.add_argument("--rows", type=int, nargs="+", default=[16, 128])
    parser.add_argument("--distinct", type=int, nargs="+", default=[1, 8, 16, 32, 128])
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
        for rows in args.rows:
            gen = torch.Generator().manual_seed(0)
            ids = torch.randint(100, 20000, (rows, args.context), generator=gen)
            mask = torch.ones_like(ids)
            with slots.rows([BASE] * rows):
                out = model(input_ids=ids, attention_mask=mask, use_cache=True, logits_to_keep=1)
            start = (out.past_key_values, mask, out.logits[:, -1:].argmax(-1))
            base_ms = statistics.median(
                step_ms(model, slots, [BASE] * rows, "peft", start) for _ in range(args.steps)
            )
            for distinct in args.distinct:
                if distinct > rows or distinct > args.slots:
                    continue
                names = [names_of[i % distinct] for i in range(rows)]
                times: dict[str, list[float]] = {"peft": [], "gathered": []}
                for mode in times:  # warm-up (the gathered stacks are built on first use)
                    step_ms(model, slots, names, mode, start)
                for _ in range(args.steps):
                    for mode in times:
                        times[mode].append(step_ms(model, slots, names, mode, start))
                row = {
                    "rows": rows,
                    "distinct": distinct,
                    "base_ms": base_ms,
                    **{f"{m}_ms": statistics.median(t) for m, t in times.items()},
                }
                results.append(row)
                print(
                    f"{rows} rows, {distinct} adapters: base {base_ms:.1f} ms, "
                    f"peft {row['peft_ms']:.1f} ms, gathered {row['gathered_ms']:.1f} ms",
                    flush=True,
                )
    print()
    print(
        f"SmolLM2-135M float32, {args.threads} threads, {args.slots} rank-8 adapters loaded, "
        f"one decode step after a {args.context}-token prefill; median of {args.steps}"
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

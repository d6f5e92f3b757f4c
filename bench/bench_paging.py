"""Adapter paging benchmarks, measured side by side in one run; prints tables.

  python bench/bench_paging.py                       # every part (about 25 minutes on 2 cores)
  python bench/bench_paging.py --part zipf --requests 256
  python bench/bench_paging.py --part registry --registered 10 1000
  python bench/bench_paging.py --quick               # every part, small: a few minutes
  python bench/bench_paging.py --part zipf --lora-forward peft   # PEFT's loop, to compare

- cold:     one cold load of a rank-8 SmolLM2 adapter on an idle hf engine (the files' check,
            reading them, the load and loramux's bookkeeping), p50/p99 over `--cold-loads`
            adapters: into a new PEFT slot (PEFT's own loading, the first adapter of a shape),
            and into a parked slot (weights copied in: the steady state of paging).
- zipf:     the hf engine (real SmolLM2) behind `serve.paging.PagedEngine`; requests whose
            adapter follows a Zipf law (s = `--zipf-s`) over `--adapters` synthetic rank-8
            adapters (random weights, the demo adapters' shapes), at `max_loaded_adapters` 8, 32
            and 128, against the same requests spread over 8 adapters that are all loaded
            ("all hot"). Each zipf run follows a warm-up stream of `--zipf-warmup` requests of
            the same law (another draw), so it measures a server that has been up. Output tok/s,
            its ratio to all hot, loads, evictions, and p50/p99 time to first token of cold
            requests (they waited for a load) and of warm ones. Goal: >= 0.8x of all hot at 128
            loaded.
- registry: a `loramux serve` subprocess (fake engine) over a registry of 10 and of 1,000
            versions, each adapter with three route utterances (so each joins the router):
            start-up time to /ready (a first start, then a restart, which finds the router's
            cache of route vectors and head), resident memory, and p50 of GET /v1/models,
            GET /v1/adapters and POST /v1/route (model auto). Goal: flat.

Requests run in-process against the engine (zipf, cold) so that the table measures paging, not
HTTP; the registry part goes through the real server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from loramux.adapters.loading import check_ref_intact  # noqa: E402
from loramux.adapters.version import content_version  # noqa: E402
from loramux.serve.paging import PagedEngine, PagingStats  # noqa: E402
from loramux.serve.types import GenerationRequest, SamplingParams  # noqa: E402
from loramux.types import AdapterRef, ChatMessage  # noqa: E402

BASE = "SmolLM2-135M-Instruct"
DEMO_HR = REPO / "demo" / "adapters" / "hr"
ADMIN_KEY = "bench-paging-admin-Xr4vT9qL2mN7wP1zK8cH5bJ3dF6gY0sA"  # 32+ random characters
TOPICS = [
    "parking permits", "badge access", "travel insurance", "desk booking", "laptop refresh",
    "gym membership", "visa letters", "shift swaps", "pension transfers", "meal vouchers",
]  # fmt: skip
"""What the synthetic adapters' route utterances are about (each adapter joins the router)."""
ROUTE_BODY = {"messages": [{"role": "user", "content": "How many vacation days do I get?"}]}
PROMPTS = [
    "How many vacation days do I get?",
    "My VPN keeps disconnecting, what should I do?",
    "Where do I find my payslip?",
    "Write two sentences about the sea.",
]


QUICK: dict[str, Any] = {
    "adapters": 200, "loaded": [32], "requests": 64, "tokens": 16, "zipf_warmup": 64,
    "cold_loads": 5, "registered": [10, 200], "samples": 5,
}  # fmt: skip
"""What `--quick` sets (it wins over the same options given)."""


def make_adapters(folder: Path, count: int, seed: int = 0) -> list[AdapterRef]:
    """`count` PEFT LoRA folders with the demo hr adapter's config and shapes, random weights."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    shapes = {k: v.shape for k, v in load_file(str(DEMO_HR / "adapter_model.safetensors")).items()}
    rng = np.random.default_rng(seed)
    refs = []
    for i in range(count):
        dest = folder / f"a{i:04d}"
        dest.mkdir(parents=True)
        shutil.copy(DEMO_HR / "adapter_config.json", dest / "adapter_config.json")
        tensors = {
            k: (rng.standard_normal(shape, dtype=np.float32) * 0.02) for k, shape in shapes.items()
        }
        save_file(tensors, str(dest / "adapter_model.safetensors"))
        refs.append(AdapterRef(f"a{i:04d}@{content_version(dest)}", dest))
    return refs


def zipf_choices(n: int, count: int, s: float, seed: int) -> list[int]:
    """`count` indexes in [0, n) drawn with P(k) proportional to 1 / (k + 1)^s."""
    weights = [1.0 / (k + 1) ** s for k in range(n)]
    return random.Random(seed).choices(range(n), weights=weights, k=count)


def request(i: int, adapter: AdapterRef | None, tokens: int) -> GenerationRequest:
    return GenerationRequest(
        request_id=f"bench-{i}",
        sampling=SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True),
        messages=(ChatMessage("user", PROMPTS[i % len(PROMPTS)]),),
        adapter=adapter,
    )


@dataclass
class Run:
    name: str
    seconds: float = 0.0
    tokens: int = 0
    cold_ttft: list[float] = field(default_factory=list)
    warm_ttft: list[float] = field(default_factory=list)
    loads: int = 0
    evictions: int = 0
    load_s: float = 0.0

    @property
    def tok_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def drive(
    engine: PagedEngine, adapters: list[AdapterRef], clients: int, tokens: int, name: str
) -> Run:
    """Send one request per entry of `adapters`, `clients` at a time."""
    run = Run(name)
    queue = list(enumerate(adapters))
    started = time.perf_counter()

    async def client() -> None:
        while queue:
            i, adapter = queue.pop(0)
            sent = time.perf_counter()
            first = None
            async for chunk in engine.stream(request(i, adapter, tokens)):
                if first is None:
                    first = time.perf_counter() - sent
                    cold = chunk.adapter_load_s is not None
                if chunk.finish_reason is not None:
                    run.tokens += chunk.completion_tokens
            assert first is not None
            (run.cold_ttft if cold else run.warm_ttft).append(first)

    await asyncio.gather(*(client() for _ in range(clients)))
    run.seconds = time.perf_counter() - started
    run.loads, run.evictions = engine.stats.loads, engine.stats.evictions
    run.load_s = engine.stats.load_seconds_sum / engine.stats.loads if engine.stats.loads else 0.0
    return run


async def zipf_part(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from loramux.config import EngineConfig, HFEngineConfig, load_config
    from loramux.models import ensure_base_model
    from loramux.serve.hf import HFEngine

    cfg = load_config(REPO / "configs" / "default.yaml", environ={})
    model_dir = ensure_base_model(cfg.model, cfg.paths.cache_dir)
    print(f"writing {args.adapters} synthetic rank-8 adapters ...", flush=True)
    refs = make_adapters(tmp / "adapters", args.adapters)
    capacities = sorted(args.loaded)
    inner = HFEngine(
        model_dir,
        EngineConfig(
            max_batch_size=args.clients,
            max_loaded_adapters=max(capacities) + 1,
            threads=args.threads,
            hf=HFEngineConfig(lora_forward=args.lora_forward),
        ),
    )
    await inner.start()
    runs: list[Run] = []
    try:
        # A cold load into a new PEFT slot (the first time a shape is seen), then into a parked
        # one (what paging does in steady state), on an idle engine, with the files' check.
        cold_row = {}
        for label, capacity in (("new slot", args.cold_loads + 1), ("parked slot", 1)):
            cold = PagedEngine(inner, capacity=capacity, verify=check_ref_intact)
            times = []
            for ref in refs[-args.cold_loads :]:
                t0 = time.perf_counter()
                await cold.add_adapter(ref)
                times.append(time.perf_counter() - t0)
            await _unload_all(cold)
            cold_row[label] = {"p50_ms": 1000 * pct(times, 0.5), "p99_ms": 1000 * pct(times, 0.99)}
            print(
                f"cold load of one rank-8 adapter, {label}: p50 {cold_row[label]['p50_ms']:.0f}"
                f" ms, p99 {cold_row[label]['p99_ms']:.0f} ms ({len(times)} loads)",
                flush=True,
            )

        picks = zipf_choices(len(refs), args.requests, args.zipf_s, seed=1)
        warm_picks = zipf_choices(len(refs), args.zipf_warmup, args.zipf_s, seed=3)
        hot = random.Random(2).choices(range(8), k=args.requests)
        warmup = [refs[k] for k in hot[: args.clients]]
        for rnd in range(args.rounds):
            paged = PagedEngine(inner, capacity=8, verify=check_ref_intact)
            for ref in refs[:8]:
                await paged.add_adapter(ref)
            await drive(paged, warmup, args.clients, args.tokens, "warm-up")
            paged.stats.loads = paged.stats.evictions = 0
            run = await drive(paged, [refs[k] for k in hot], args.clients, args.tokens, "all hot")
            runs.append(run)
            print(f"round {rnd + 1}: all hot {run.tok_s:.1f} tok/s", flush=True)
            await _unload_all(paged)
            for capacity in capacities:
                paged = PagedEngine(
                    inner, capacity=capacity, verify=check_ref_intact, wait_timeout_s=600
                )
                # Steady state: first a warm-up stream of the same law (another draw), so the
                # run measures paging in a server that has been up, not its first minutes.
                if args.zipf_warmup:
                    await drive(paged, [refs[k] for k in warm_picks], args.clients, 4, "warm-up")
                    paged.stats = PagingStats()
                run = await drive(
                    paged, [refs[k] for k in picks], args.clients, args.tokens, f"zipf {capacity}"
                )
                runs.append(run)
                print(
                    f"round {rnd + 1}: zipf, {capacity} loaded: {run.tok_s:.1f} tok/s, "
                    f"{run.loads} loads, {len(run.cold_ttft)} cold requests",
                    flush=True,
                )
                await _unload_all(paged)
    finally:
        await inner.stop()
    return {"cold_load": cold_row, "runs": [r.__dict__ | {"tok_s": r.tok_s} for r in runs]}


async def _unload_all(paged: PagedEngine) -> None:
    for key in paged.loaded_adapters():
        await paged.remove_adapter(key)


def zipf_table(result: dict[str, Any], args: argparse.Namespace) -> None:
    runs = result["runs"]
    names = list(dict.fromkeys(r["name"] for r in runs))
    median = {n: statistics.median(r["tok_s"] for r in runs if r["name"] == n) for n in names}
    print()
    print(
        f"hf engine, SmolLM2-135M, {args.adapters} rank-8 adapters, {args.requests} requests "
        f"({args.clients} at a time, {args.tokens} tokens each), Zipf s={args.zipf_s}; "
        f"median of {args.rounds} round(s)"
    )
    print(
        "| run | output tok/s | vs all hot | loads | evictions | mean load ms "
        "| cold requests | cold TTFT p50 / p99 ms | warm TTFT p50 / p99 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n in names:
        last = [r for r in runs if r["name"] == n][-1]
        cold, warm = last["cold_ttft"], last["warm_ttft"]
        print(
            f"| {n} | {median[n]:.1f} | {median[n] / median['all hot']:.2f}x | {last['loads']} "
            f"| {last['evictions']} | {1000 * last['load_s']:.0f} | {len(cold)} "
            f"| {1000 * pct(cold, 0.5):.0f} / {1000 * pct(cold, 0.99):.0f} "
            f"| {1000 * pct(warm, 0.5):.0f} / {1000 * pct(warm, 0.99):.0f} |"
        )
    print()
    for label, cl in result["cold_load"].items():
        print(
            f"cold load of one rank-8 adapter on an idle engine, into a {label}: "
            f"p50 {cl['p50_ms']:.0f} ms, p99 {cl['p99_ms']:.0f} ms"
        )


# -- registry part ---------------------------------------------------------------------------


def registry_part(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    import httpx

    from tests.serve_process import free_port, stop

    rows = []
    source = make_adapters(tmp / "registry-src", max(args.registered))
    for count in args.registered:
        state = tmp / f"registry-{count}"
        asyncio.run(_register_offline(state / "data", source[:count]))
        port = free_port()
        config = state / "serve.yaml"
        config.write_text(
            f"server: {{host: 127.0.0.1, port: {port}, log_level: warning}}\n"
            f"paths: {{data_dir: {state / 'data'}}}\n"
            "engine: {kind: fake, max_loaded_adapters: 32}\n"
            f"router: {{routes: {REPO / 'configs' / 'routes' / 'demo.yaml'}}}\n"
            "kb: {sources: []}\n"
            "dashboard: {enabled: false}\n",
            encoding="utf-8",
        )
        env = {**os.environ, "LORAMUX_ADMIN_KEY": ADMIN_KEY, "PYTHONPATH": str(REPO / "src")}
        row: dict[str, Any] = {"registered": count}
        # The first start encodes the adapters' route utterances and trains the router's head;
        # the restart finds both in the data dir's router cache (`router/cache.py`).
        for attempt in ("first_start_s", "startup_s"):
            log = (state / "serve.log").open("ab")
            started = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "loramux", "serve", "--config", str(config)],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            url = f"http://127.0.0.1:{port}"
            try:
                while True:
                    if proc.poll() is not None:
                        raise SystemExit((state / "serve.log").read_text()[-3000:])
                    try:
                        if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.05)
                row[attempt] = time.perf_counter() - started
                if attempt == "startup_s":
                    row |= _time_calls(url, args.samples)
                    row["rss_mb"] = _rss(proc.pid) / 2**20
            finally:
                stop(proc, 20)
                log.close()
        rows.append(row)
        print(
            f"{count} registered: ready in {row['first_start_s']:.1f} s (first start), "
            f"{row['startup_s']:.1f} s (restart), {row['rss_mb']:.0f} MB",
            flush=True,
        )
    return rows


def _time_calls(url: str, samples: int) -> dict[str, float]:
    """p50 ms of each read call the registry's size could slow down."""
    import httpx

    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    out = {}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        calls = {
            "GET /v1/models": lambda: client.get("/v1/models"),
            "GET /v1/adapters": lambda: client.get("/v1/adapters"),
            "POST /v1/route": lambda: client.post("/v1/route", json=ROUTE_BODY),
        }
        for label, call in calls.items():
            times = []
            for _ in range(samples):
                t0 = time.perf_counter()
                r = call()
                times.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text
            out[label] = 1000 * statistics.median(times)
    return out


async def _register_offline(data_dir: Path, refs: list[AdapterRef]) -> None:
    from loramux.adapters.registry import AdapterRegistry
    from loramux.adapters.validation import LLAMA_MODULES, BaseModelSpec

    registry = AdapterRegistry.open(data_dir, BaseModelSpec(BASE, LLAMA_MODULES))
    await registry.start()
    for i, ref in enumerate(refs):
        topic = TOPICS[i % len(TOPICS)] + (f" {i // len(TOPICS)}" if i >= len(TOPICS) else "")
        utterances = [f"How do I request {topic}?", f"Who handles {topic}?", f"{topic} question"]
        await registry.register(
            ref.path, name=ref.key.split("@")[0], actor="bench", utterances=utterances
        )
    await registry.close()


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def registry_table(rows: list[dict[str, Any]]) -> None:
    print()
    print("loramux serve (fake engine, demo routes), registry of N versions; p50 of each call, ms")
    print(
        "| registered | first start to /ready | restart to /ready | RSS | GET /v1/models "
        "| GET /v1/adapters | POST /v1/route |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['registered']} | {r['first_start_s']:.1f} s | {r['startup_s']:.1f} s "
            f"| {r['rss_mb']:.0f} MB "
            f"| {r['GET /v1/models']:.1f} | {r['GET /v1/adapters']:.1f} "
            f"| {r['POST /v1/route']:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "zipf", "registry"], default="all")
    parser.add_argument("--adapters", type=int, default=1000)
    parser.add_argument("--loaded", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--zipf-s", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--zipf-warmup",
        type=int,
        default=512,
        help="requests of the same law (4 tokens each) before each measured zipf run; 0: none",
    )
    parser.add_argument("--cold-loads", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--registered", type=int, nargs="+", default=[10, 1000])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--lora-forward",
        choices=["gathered", "peft"],
        default="gathered",
        help="engine.hf.lora_forward of the zipf part's hf engine",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a few minutes' check of a change, not a measurement: {QUICK}",
    )
    args = parser.parse_args()
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="loramux-paging-") as tmp:
        if args.part in ("all", "zipf"):
            results["zipf"] = asyncio.run(zipf_part(args, Path(tmp)))
        if args.part in ("all", "registry"):
            results["registry"] = registry_part(args, Path(tmp))
    if "zipf" in results:
        zipf_table(results["zipf"], args)
    if "registry" in results:
        registry_table(results["registry"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()

"""Serving benchmarks of the foundation, measured side by side in one run; prints a table.

  python bench/bench_serving.py                # all three parts
  python bench/bench_serving.py --part mixed   # or: batching, gateway

- mixed:    decode throughput of a batch mixing 2 adapters + the base model vs a base-only batch
            of the same size (hf engine, real SmolLM2, demo adapters). Goal: ratio >= 0.9.
- batching: 16 concurrent requests vs the same 16 one after another (hf engine). Goal: >= 4x.
- gateway:  p50 latency of a chat request through `loramux serve` (uvicorn, loopback HTTP, fake
            engine) minus the same request straight into the fake engine. Goal: <= 2 ms.

Runs are interleaved and repeated (best of --repeats) so a noisy machine hurts both sides alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))  # tests.serve_process: free_port
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from loramux.adapters.version import inspect_adapter  # noqa: E402
from loramux.config import load_config  # noqa: E402
from loramux.serve.engine import generate  # noqa: E402
from loramux.serve.types import GenerationRequest, SamplingParams  # noqa: E402
from loramux.types import AdapterRef, ChatMessage  # noqa: E402

BASE = "SmolLM2-135M-Instruct"
PROMPTS = [
    "How many vacation days do I get?",
    "My VPN keeps disconnecting, what should I do?",
    "Write two sentences about the sea.",
    "What is the capital of Norway?",
]


def _request(i: int, adapter: AdapterRef | None, max_tokens: int) -> GenerationRequest:
    return GenerationRequest(
        request_id=f"b{i}",
        sampling=SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True),
        messages=(ChatMessage("user", PROMPTS[i % len(PROMPTS)]),),
        adapter=adapter,
    )


async def _run_batch(engine: object, requests: list[GenerationRequest]) -> tuple[float, int]:
    start = time.perf_counter()
    results = await asyncio.gather(*(generate(engine, r) for r in requests))  # type: ignore[arg-type]
    return time.perf_counter() - start, sum(r.completion_tokens for r in results)


async def _hf_parts(parts: set[str], batch: int, tokens: int, repeats: int) -> list[tuple]:
    from loramux.config import EngineConfig, HFEngineConfig
    from loramux.models import ensure_base_model
    from loramux.serve.hf import HFEngine

    cfg = load_config(REPO / "configs" / "default.yaml", environ={})
    engine = HFEngine(
        ensure_base_model(cfg.model, cfg.paths.cache_dir),
        EngineConfig(max_batch_size=max(batch, 16), hf=HFEngineConfig(max_wait_ms=50)),
    )
    await engine.start()
    refs = [
        inspect_adapter(REPO / "demo" / "adapters" / n, name=n, base_model=BASE).ref()
        for n in ("hr", "it")
    ]
    for r in refs:
        await engine.add_adapter(r)
    rows: list[tuple] = []
    await _run_batch(engine, [_request(i, None, 8) for i in range(4)])  # warm-up
    if "mixed" in parts:
        base_tps, mixed_tps = [], []
        for _ in range(repeats):  # interleaved: base, mixed, base, mixed, ...
            secs, toks = await _run_batch(engine, [_request(i, None, tokens) for i in range(batch)])
            base_tps.append(toks / secs)
            choice = [refs[0], refs[1], None]
            secs, toks = await _run_batch(
                engine, [_request(i, choice[i % 3], tokens) for i in range(batch)]
            )
            mixed_tps.append(toks / secs)
        b, m = max(base_tps), max(mixed_tps)
        rows.append((f"base-only batch of {batch}", f"{b:.1f} tok/s", ""))
        rows.append(
            (f"mixed batch of {batch} (hr, it, base)", f"{m:.1f} tok/s", f"{m / b:.2f}x (>= 0.9)")
        )
    if "batching" in parts:
        n = 16
        seq_times, conc_times = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            for i in range(n):
                await generate(engine, _request(i, refs[i % 2] if i % 3 else None, tokens))
            seq_times.append(time.perf_counter() - start)
            secs, _ = await _run_batch(
                engine, [_request(i, refs[i % 2] if i % 3 else None, tokens) for i in range(n)]
            )
            conc_times.append(secs)
        s, c = min(seq_times), min(conc_times)
        rows.append((f"{n} requests one after another", f"{s:.2f} s", ""))
        rows.append((f"{n} requests concurrently", f"{c:.2f} s", f"{s / c:.1f}x faster (>= 4)"))
    await engine.stop()
    return rows


def _gateway(n: int) -> list[tuple]:
    import httpx

    from loramux.serve.fake import FakeEngine

    body = {
        "model": BASE,
        "messages": [{"role": "user", "content": PROMPTS[0]}],
        "max_tokens": 16,
    }
    engine = FakeEngine()

    async def direct() -> list[float]:
        await engine.start()
        req = _request(0, None, 16)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            await generate(engine, req)
            times.append(time.perf_counter() - t)
        return times

    from tests.serve_process import free_port

    port = free_port()
    # Auth stays on, as in production: the client sends an admin key with every request.
    key = "bench-gateway-admin-Xr4vT9qL2mN7wP1zK8cH5bJ3dF6gY0sA"  # 32+ random characters
    env = {
        **os.environ,
        "LORAMUX_ENGINE": "fake",
        "LORAMUX_PORT": str(port),
        "LORAMUX_AUTH": "on",
        "LORAMUX_ADMIN_KEY": key,
    }
    config = REPO / "bench" / "gateway.yaml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "loramux", "serve", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, timeout=10, headers=headers) as client:
            for _ in range(200):
                try:
                    if client.get("/ready").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            for _ in range(50):  # warm-up
                client.post("/v1/chat/completions", json=body)
            http_times, direct_times = [], []
            for _ in range(5):  # interleave blocks of HTTP and direct calls
                for _ in range(n // 5):
                    t = time.perf_counter()
                    r = client.post("/v1/chat/completions", json=body)
                    http_times.append(time.perf_counter() - t)
                    assert r.status_code == 200, r.text
                direct_times += asyncio.run(direct())[: n // 5]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    h, d = statistics.median(http_times), statistics.median(direct_times)
    p99 = sorted(http_times)[int(0.99 * len(http_times))]
    return [
        ("fake engine called directly, p50", f"{1000 * d:.3f} ms", ""),
        ("through loramux serve (HTTP), p50", f"{1000 * h:.3f} ms", f"p99 {1000 * p99:.2f} ms"),
        ("gateway overhead, p50", f"{1000 * (h - d):.3f} ms", "(<= 2 ms)"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "mixed", "batching", "gateway"], default="all")
    parser.add_argument("--batch", type=int, default=24, help="batch size for the mixed part")
    parser.add_argument("--tokens", type=int, default=32, help="tokens generated per request")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=500, help="requests for the gateway part")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    parts = {"mixed", "batching", "gateway"} if args.part == "all" else {args.part}
    rows: list[tuple] = []
    if parts & {"mixed", "batching"}:
        rows += asyncio.run(_hf_parts(parts, args.batch, args.tokens, args.repeats))
    if "gateway" in parts:
        rows += _gateway(args.requests)
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  {'value':>14}  vs goal")
    print("-" * (width + 32))
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>14}  {note}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

"""Routing at GPU rates: does the router decide as fast as the engine serves? (issue 6)

Runs on the lent GPU machine (vLLM installed), or anywhere `loramux serve` runs:

  python bench/gpu/routing_rate.py --out $OUT [--embedder-device cuda|cpu]

Starts `loramux serve --engine vllm` with SmolLM2-135M-Instruct (a small model serves many
requests per second, the hardest case for the router), the demo adapters hr, it and finance, the
demo's fitted router, no knowledge base (an abstained request gets the base model, so `auto`
and named requests cost the engine the same). Client processes then send, interleaved, for
`--rounds` rounds (the first one is the warm-up):

- named: chat requests that name the adapter of their test question (`demo/routing/test.jsonl`
  labels; the base model for out-of-scope ones): the engine's requests/s;
- auto: the same requests with `model: "auto"`: the router decides each one on the way;
- route: `POST /v1/route` for the same texts: the router's decisions/s on their own.

Prints requests/s for each and the two ratios the issue asks about: decisions/s over the
requests/s served, and `auto` over named throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))  # tests.serve_process: free port, wait for /ready
os.environ.setdefault("HF_HUB_OFFLINE", "1")
BASE = "SmolLM2-135M-Instruct"
ADAPTERS = ("hr", "it", "finance")


def texts() -> list[tuple[str, str]]:
    """(text, named model) for every in-scope and out-of-scope test question."""
    out = []
    for line in (REPO / "demo" / "routing" / "test.jsonl").read_text().splitlines():
        item = json.loads(line)
        if item["kind"] == "followup":
            continue
        out.append((item["text"], item["label"] if item["label"] in ADAPTERS else BASE))
    return out


async def _client(
    url: str, jobs: list[tuple[str, str]], mode: str, width: int, tokens: int, start_at: float
) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(max_connections=width + 4, max_keepalive_connections=width + 4)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        await client.get("/health")
        queue = list(reversed(jobs))
        errors = 0

        async def worker() -> int:
            nonlocal errors
            done = 0
            while queue:
                text, model = queue.pop()
                messages = [{"role": "user", "content": text}]
                if mode == "route":
                    r = await client.post("/v1/route", json={"model": "auto", "messages": messages})
                else:
                    body = {
                        "model": "auto" if mode == "auto" else model,
                        "messages": messages,
                        "max_tokens": tokens,
                        "temperature": 0,
                    }
                    r = await client.post("/v1/chat/completions", json=body)
                if r.status_code != 200:
                    errors += 1
                done += 1
            return done

        await asyncio.sleep(max(0.0, start_at - time.time()))
        begin = time.time()
        counts = await asyncio.gather(*(worker() for _ in range(width)))
        return {"begin": begin, "end": time.time(), "done": sum(counts), "errors": errors}


def _client_main(args: tuple) -> dict[str, Any]:
    return asyncio.run(_client(*args))


def run_mode(
    url: str, mode: str, jobs: list[tuple[str, str]], procs: int, width: int, tokens: int
) -> tuple[float, int]:
    """Requests per second for `jobs` spread over `procs` client processes; and errors."""
    start_at = time.time() + 1.0
    parts = [
        (url, jobs[k::procs], mode, max(1, width // procs), tokens, start_at) for k in range(procs)
    ]
    with mp.get_context("spawn").Pool(procs) as pool:
        results = pool.map(_client_main, parts)
    seconds = max(r["end"] for r in results) - min(r["begin"] for r in results)
    return sum(r["done"] for r in results) / seconds, sum(r["errors"] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out"))
    parser.add_argument("--embedder-device", default="cuda")
    parser.add_argument("--engine", default="vllm")
    parser.add_argument("--requests", type=int, default=2048, help="per mode and round")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--client-procs", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ready-timeout", type=float, default=420)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from tests.serve_process import free_port, stop, wait_ready

    port = free_port()
    config = args.out / "routing_rate.yaml"
    lines = [
        "server:\n  log_level: warning",
        "auth:\n  enabled: false",
        f"paths:\n  data_dir: {args.out.resolve() / 'data'}",
        f"embedder:\n  device: {args.embedder_device}",
        "engine:",
        f"  kind: {args.engine}",
        "  max_batch_size: 256",
        "  context_length: 2048",
        "  vllm:",
        "    max_loras: 4",
        "    max_lora_rank: 32",  # the demo adapters: rank 32
        "    gpu_memory_utilization: 0.5",
        "router:",
        "  cache_size: 0",  # every text encoded: real traffic rarely repeats a message
        f"  routes: {REPO / 'configs' / 'routes' / 'demo.yaml'}",
        f"  fitted: {REPO / 'configs' / 'routes' / 'demo.fitted.yaml'}",
        "adapters:",
        *[f"  {n}:\n    path: {REPO / 'demo' / 'adapters' / n}" for n in ADAPTERS],
    ]
    config.write_text("\n".join(lines) + "\n")
    log = (args.out / "routing_serve.log").open("w")
    env = {**os.environ, "LORAMUX_PORT": str(port)}
    cmd = [sys.executable, "-m", "loramux", "serve", "--config", str(config)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    try:
        tail = (args.out / "routing_serve.log").read_text
        why = wait_ready(proc, url, lambda: tail()[-3000:], timeout=args.ready_timeout, interval=1)
        if why:
            raise SystemExit(why)
        print(f"serve ready after {time.perf_counter() - t0:.0f} s", flush=True)
        base = texts()
        jobs = (base * (args.requests // len(base) + 1))[: args.requests]
        rates: dict[str, list[float]] = {"named": [], "auto": [], "route": []}
        errors = 0
        for rnd in range(args.rounds):
            for mode in rates:
                rate, errs = run_mode(
                    url, mode, jobs, args.client_procs, args.concurrency, args.max_tokens
                )
                errors += errs
                if rnd:
                    rates[mode].append(rate)
                print(f"round {rnd} {mode:>5}: {rate:8.0f} requests/s ({errs} errors)", flush=True)
    finally:
        stop(proc, 60)
    med = {m: statistics.median(v) for m, v in rates.items()}
    lines = [
        f"Routing at GPU rates: {args.requests} requests per mode and round, {args.concurrency} "
        f"at once from {args.client_procs} client processes, chat with max_tokens "
        f"{args.max_tokens}; embedder on {args.embedder_device}, engine {args.engine}; median "
        f"of {len(rates['named'])} rounds after a warm-up",
        f"  named adapter (engine serves)    {med['named']:8.0f} requests/s",
        f"  model=auto (routed, then served) {med['auto']:8.0f} requests/s",
        f"  POST /v1/route (decisions only)  {med['route']:8.0f} decisions/s",
        f"  decisions/s over requests/s served: {med['route'] / med['named']:.2f}x (goal >= 1)",
        f"  auto over named throughput:        {med['auto'] / med['named']:.2f}x",
        f"  errors: {errors}",
    ]
    text = "\n".join(lines)
    print(text)
    (args.out / "routing_rate.txt").write_text(text + "\n")
    (args.out / "routing_rate.json").write_text(
        json.dumps({"rates": rates, "median": med, "errors": errors}, indent=1)
    )


if __name__ == "__main__":
    main()

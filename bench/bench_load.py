"""Load test: N concurrent clients for T seconds against a `loramux serve` subprocess on loopback.

  python bench/bench_load.py --engine fake --clients 200 --duration 60
  python bench/bench_load.py --engine hf --clients 16 --duration 60 --max-tokens 16
  python bench/bench_load.py --engine fake --clients 200 --duration 30 \
      --max-in-flight 8 --max-queued 16             # overload on purpose: fast 503s

Each client sends chat requests back to back (half of them streamed, models cycling over the
base model and the demo adapters `hr` and `it`) until the time is up. Prints one table:
requests, ok, the documented 503s (`server_overloaded`, `engine_unavailable`, `shutting_down`,
each with `Retry-After`), any other 5xx, 4xx, transport errors, latency p50/p99 of the answered
requests, and the server's resident memory after a warm-up and at the end (growth in %).

The server runs the real app (registry, auth, limits, supervisor) in its own process, so its
memory is measured alone; the clients share the machine's cores with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.serve_process: free_port
BASE = "SmolLM2-135M-Instruct"
ADMIN_KEY = "bench-load-admin-Xr4vT9qL2mN7wP1zK8cH5bJ3dF6gY0sA"  # 32+ random characters
DOCUMENTED_503 = {"server_overloaded", "engine_unavailable", "shutting_down"}
PROMPTS = [
    "How many vacation days do I get?",
    "My VPN keeps disconnecting, what should I do?",
    "Write two sentences about the sea.",
    "What is the capital of Norway? Answer in one word, then explain why in a few words.",
]
MODELS = [BASE, "hr", "it"]


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    refusal_latencies: list[float] = field(default_factory=list)
    retry_after_missing: int = 0
    other_5xx_bodies: list[str] = field(default_factory=list)


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_config(state: Path, args: argparse.Namespace, port: int) -> Path:
    engine = (
        f"engine: {{kind: fake, fake: {{token_delay_s: {args.fake_token_delay}}}, "
        "max_new_tokens: 512, default_max_tokens: 256}\n"
        if args.engine == "fake"
        else f"engine: {{kind: hf, max_batch_size: {args.clients}, max_new_tokens: 512"
        + (f", threads: {args.threads}" if args.threads else "")
        + "}\n"
    )
    limits = [f"max_in_flight: {args.max_in_flight}", f"max_queued: {args.max_queued}"]
    config = state / "load.yaml"
    config.write_text(
        f"server: {{host: 127.0.0.1, port: {port}, log_level: warning}}\n"
        f"paths: {{data_dir: {state / 'data'}}}\n"
        + engine
        + f"limits: {{{', '.join(limits)}}}\n"
        + "adapters:\n"
        + f"  hr: {{path: {REPO / 'demo' / 'adapters' / 'hr'}}}\n"
        + f"  it: {{path: {REPO / 'demo' / 'adapters' / 'it'}}}\n",
        encoding="utf-8",
    )
    return config


def start_server(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LORAMUX_ADMIN_KEY": ADMIN_KEY,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO / "src"),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "loramux", "serve", "--config", str(config)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"loramux serve exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("loramux serve was not ready in 300 s")


async def one_request(
    client: httpx.AsyncClient, i: int, max_tokens: int, tally: Tally, record: bool
) -> float:
    """Send one chat request and count its outcome; returns the `Retry-After` of a 503."""
    stream = i % 2 == 1
    body = {
        "model": MODELS[i % len(MODELS)],
        "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    }
    started = time.perf_counter()
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            text = (await r.aread()).decode(errors="replace")
    except httpx.HTTPError as exc:
        if record:
            tally.outcomes[f"transport error ({type(exc).__name__})"] += 1
        return 0.0
    took = time.perf_counter() - started
    retry_after = float(r.headers.get("retry-after", 0)) if r.status_code == 503 else 0.0
    if not record:
        return retry_after
    if r.status_code == 200:
        if stream and ("data: [DONE]" not in text or '"error"' in text):
            tally.outcomes["stream ended with an error event"] += 1
        else:
            tally.outcomes["ok"] += 1
            tally.latencies.append(took)
    elif r.status_code == 503 and _code(text) in DOCUMENTED_503:
        tally.outcomes[f"503 {_code(text)}"] += 1
        tally.refusal_latencies.append(took)
        if "retry-after" not in r.headers:
            tally.retry_after_missing += 1
    elif r.status_code >= 500:
        tally.outcomes[f"other {r.status_code}"] += 1
        tally.other_5xx_bodies.append(text[:300])
    else:
        tally.outcomes[f"{r.status_code}"] += 1
    return retry_after


def _code(text: str) -> str | None:
    try:
        code = json.loads(text)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None


async def run_clients(
    url: str,
    clients: int,
    duration: float,
    warmup: float,
    max_tokens: int,
    on_warm: Callable[[], object],
    on_sample: Callable[[], object],
    sample_every_s: float,
    honour_retry_after: bool,
) -> Tally:
    tally = Tally()
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    start = time.monotonic()
    warm_until, stop_at = start + warmup, start + warmup + duration

    async def client_loop(c: int) -> None:
        # One client, one keep-alive connection: httpx's pool gets slow when one pool serves
        # hundreds of connections, and the load generator must not be the bottleneck.
        async with httpx.AsyncClient(
            base_url=url,
            headers=headers,
            timeout=120,
            verify=False,  # loopback, plain HTTP
        ) as client:
            i = c
            while time.monotonic() < stop_at:
                record = time.monotonic() >= warm_until
                wait = await one_request(client, i, max_tokens, tally, record)
                if wait and honour_retry_after:
                    await asyncio.sleep(wait)
                i += clients

    async def mark_warm() -> None:
        await asyncio.sleep(warmup)
        on_warm()  # memory after the warm-up: the baseline of the growth
        while time.monotonic() < stop_at - sample_every_s / 2:
            await asyncio.sleep(sample_every_s)
            on_sample()

    await asyncio.gather(mark_warm(), *(client_loop(c) for c in range(clients)))
    return tally


def _p50_p99(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{1000 * statistics.median(values):.0f} / {1000 * percentile(values, 0.99):.0f} ms"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["fake", "hf"], default="fake")
    parser.add_argument("--clients", type=int, default=None, help="default: fake 200, hf 16")
    parser.add_argument("--duration", type=float, default=None, help="s; default fake 60, hf 30")
    parser.add_argument("--warmup", type=float, default=15.0, help="s of load before measuring")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument(
        "--fake-token-delay", type=float, default=0.005, help="fake engine: s per token"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="hf engine: torch threads (engine.threads)"
    )
    parser.add_argument("--max-in-flight", type=int, default=64, help="limits.max_in_flight")
    parser.add_argument("--max-queued", type=int, default=256, help="limits.max_queued")
    parser.add_argument(
        "--ignore-retry-after",
        action="store_true",
        help="retry a 503 at once instead of waiting its Retry-After",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    args.clients = args.clients or (200 if args.engine == "fake" else 16)
    args.duration = args.duration or (60.0 if args.engine == "fake" else 30.0)

    with tempfile.TemporaryDirectory(prefix="loramux-load-") as tmp:
        state = Path(tmp)
        from tests.serve_process import free_port

        port = free_port()
        config = write_config(state, args, port)
        proc = start_server(config, port, state / "serve.log")
        try:
            rss_idle = rss_bytes(proc.pid)
            warm: dict[str, float] = {}
            samples: list[int] = []
            tally = asyncio.run(
                run_clients(
                    f"http://127.0.0.1:{port}",
                    args.clients,
                    args.duration,
                    args.warmup,
                    args.max_tokens,
                    lambda: warm.update(rss=rss_bytes(proc.pid), cpu=cpu_seconds(proc.pid)),
                    lambda: samples.append(rss_bytes(proc.pid)),
                    args.duration / 6,
                    not args.ignore_retry_after,
                )
            )
            rss_end = rss_bytes(proc.pid)
            server_cpu = cpu_seconds(proc.pid) - warm["cpu"]
            log = (state / "serve.log").read_text(errors="replace")
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    report(args, tally, rss_idle, int(warm["rss"]), [*samples, rss_end], server_cpu, log)


def report(
    args: argparse.Namespace,
    tally: Tally,
    rss_idle: int,
    rss_warm: int,
    rss_samples: list[int],
    server_cpu: float,
    log: str,
) -> None:
    total = sum(tally.outcomes.values())
    ok = tally.outcomes["ok"]
    documented = sum(n for k, n in tally.outcomes.items() if k.startswith("503 "))
    other_5xx = sum(n for k, n in tally.outcomes.items() if k.startswith("other "))
    lat = tally.latencies or [float("nan")]
    rss_end = rss_samples[-1]
    growth = 100 * (rss_end - rss_warm) / rss_warm
    rows = [
        ("engine", args.engine + (f" ({args.threads} torch threads)" if args.threads else "")),
        ("clients x duration", f"{args.clients} x {args.duration:g} s (after {args.warmup:g} s)"),
        ("limits", f"max_in_flight {args.max_in_flight}, max_queued {args.max_queued}"),
        ("clients wait Retry-After", "no" if args.ignore_retry_after else "yes"),
        ("requests", f"{total} ({total / args.duration:.1f}/s)"),
        ("ok", f"{ok} ({ok / args.duration:.1f}/s)"),
        ("documented 503s (Retry-After)", f"{documented}"),
        ("other 5xx", f"{other_5xx}"),
        (
            "other outcomes",
            ", ".join(
                f"{k}: {n}"
                for k, n in sorted(tally.outcomes.items())
                if k != "ok" and not k.startswith(("503 ", "other "))
            )
            or "-",
        ),
        ("503 without Retry-After", f"{tally.retry_after_missing}"),
        ("503 latency p50 / p99", _p50_p99(tally.refusal_latencies)),
        ("latency p50 / p99 (ok)", _p50_p99(tally.latencies)),
        (
            "server RSS idle / warm / end",
            f"{rss_idle / 2**20:.0f} / {rss_warm / 2**20:.0f} / {rss_end / 2**20:.0f} MiB",
        ),
        ("RSS every T/6 after warm-up", " ".join(f"{r / 2**20:.0f}" for r in rss_samples) + " MiB"),
        ("RSS growth after warm-up", f"{growth:+.1f} %"),
        ("server CPU (of one core)", f"{100 * server_cpu / args.duration:.0f} %"),
        ("tracebacks in the server log", f"{log.count('Traceback')}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    for body in tally.other_5xx_bodies[:3]:
        print(f"  other 5xx: {body}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "outcomes": dict(tally.outcomes),
                    "p50_ms": 1000 * statistics.median(lat),
                    "p99_ms": 1000 * percentile(lat, 0.99),
                    "rss_idle": rss_idle,
                    "rss_warm": rss_warm,
                    "rss_end": rss_end,
                    "rss_samples": rss_samples,
                    "rss_growth_pct": growth,
                    "server_cpu_pct": 100 * server_cpu / args.duration,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()

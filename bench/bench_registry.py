"""Adapter registry benchmarks, measured side by side in one run; prints a table.

  python bench/bench_registry.py                  # both parts
  python bench/bench_registry.py --part resolve   # or: servable

- resolve:  time to pick the adapter version of a chat request (`registry.assign`, in-memory
            table, sticky hash) vs the same answer read from SQLite per request; p50/p99 over
            many distinct users, with 20 adapters of 3 versions each in a 50/30/20 split.
            Goal: <= 1 ms added per chat request.
- servable: on the hf engine (real SmolLM2), while background generations keep the engine busy,
            register the demo hr adapter as a new version of an adapter that already serves
            traffic, then time until a request pinned to that version gets its first token.
            Goal: <= 2 s from the registration call to the first token.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from loramux.adapters.registry import AdapterRegistry  # noqa: E402
from loramux.adapters.traffic import TrafficSplit, user_bucket  # noqa: E402
from loramux.adapters.validation import spec_from_hf_config  # noqa: E402
from loramux.config import load_config  # noqa: E402
from loramux.serve.types import GenerationRequest, SamplingParams  # noqa: E402
from loramux.storage.sqlite import DB_FILE  # noqa: E402
from loramux.types import AdapterRef, ChatMessage  # noqa: E402

BASE = "SmolLM2-135M-Instruct"
DEMO_HR = REPO / "demo" / "adapters" / "hr"
SMOLLM2_SIZES = {
    "model_type": "llama",
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
}


def _variant(source: Path, dest: Path, alpha: int) -> Path:
    """A copy of a PEFT folder with another lora_alpha: same weights, a new version id."""
    shutil.copytree(source, dest)
    config_path = dest / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["lora_alpha"] = alpha
    config_path.write_text(json.dumps(config))
    return dest


def _percentiles(samples_ns: list[int]) -> tuple[float, float]:
    ordered = sorted(samples_ns)
    return ordered[len(ordered) // 2] / 1e3, ordered[int(0.99 * len(ordered))] / 1e3


async def _resolve_part(users: int) -> list[tuple[str, str, str]]:
    base = spec_from_hf_config(SMOLLM2_SIZES, name=BASE)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        registry = AdapterRegistry.open(work / "data", base)
        await registry.start()
        source = _small_adapter(work / "src")
        for a in range(20):
            name = f"task{a}"
            ids = []
            for v in range(3):
                folder = _variant(source, work / f"{name}-{v}", alpha=1 + 3 * a + v)
                ids.append((await registry.register(folder, name=name, actor="bench")).version)
            weights = dict(zip((r.version for r in ids), (50, 30, 20), strict=True))
            await registry.set_traffic(name, weights, actor="bench")
        db = sqlite3.connect(work / "data" / DB_FILE)
        names = [f"task{i % 20}" for i in range(users)]

        def direct(name: str, user: str) -> str:
            """The same answer, read from SQLite for each request."""
            experiment = db.execute(
                "SELECT experiment_id FROM adapters WHERE name = ?", (name,)
            ).fetchone()[0]
            rows = db.execute(
                """SELECT t.version, t.weight, v.path FROM traffic t JOIN versions v
                   ON v.adapter = t.adapter AND v.version = t.version
                   WHERE t.adapter = ? AND v.status != 'retired'""",
                (name,),
            ).fetchall()
            split = TrafficSplit.from_weights({r[0]: r[1] for r in rows}, experiment)
            return split.pick(user_bucket(user, experiment))

        for i in range(2000):  # warm-up both
            registry.assign(names[i], f"u{i}")
            direct(names[i], f"u{i}")
        cached: list[int] = []
        queried: list[int] = []
        for i in range(users):
            user = hashlib.sha1(str(i).encode()).hexdigest()
            t = time.perf_counter_ns()
            assignment = registry.assign(names[i], user)
            cached.append(time.perf_counter_ns() - t)
            t = time.perf_counter_ns()
            picked = direct(names[i], user)
            queried.append(time.perf_counter_ns() - t)
            assert assignment is not None
            assert assignment.version.version == picked
        db.close()
        await registry.close()
    c50, c99 = _percentiles(cached)
    q50, q99 = _percentiles(queried)
    return [
        (
            "resolve, in-memory table (p50 / p99)",
            f"{c50:.1f} / {c99:.1f} us",
            f"{c99 / 1000:.4f} ms p99 (<= 1 ms)",
        ),
        ("resolve, SQLite query per request (p50 / p99)", f"{q50:.1f} / {q99:.1f} us", ""),
        ("in-memory speed-up at p50", f"{q50 / c50:.0f}x", f"{users} requests, 20 adapters"),
    ]


def _small_adapter(dest: Path) -> Path:
    """A syntactically valid LoRA folder (r 8, q_proj of layer 0), for the resolve part."""
    import numpy as np
    from safetensors.numpy import save_file

    dest.mkdir(parents=True)
    config = {
        "peft_type": "LORA",
        "base_model_name_or_path": BASE,
        "r": 8,
        "lora_alpha": 16,
        "target_modules": ["q_proj", "v_proj"],
        "task_type": "CAUSAL_LM",
    }
    (dest / "adapter_config.json").write_text(json.dumps(config))
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    save_file(
        {
            f"{prefix}.lora_A.weight": np.zeros((8, 576), dtype=np.float32),
            f"{prefix}.lora_B.weight": np.zeros((576, 8), dtype=np.float32),
        },
        str(dest / "adapter_model.safetensors"),
    )
    return dest


def _request(i: int, adapter: AdapterRef | None, tokens: int) -> GenerationRequest:
    return GenerationRequest(
        request_id=f"bench{i}",
        sampling=SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True),
        messages=(ChatMessage("user", "How many vacation days do I get?"),),
        adapter=adapter,
    )


class _TimedEngine:
    """Passes adapter loads to the engine and records how long each took."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.load_s: list[float] = []

    async def add_adapter(self, adapter: AdapterRef) -> None:
        t = time.perf_counter()
        await self.engine.add_adapter(adapter)
        self.load_s.append(time.perf_counter() - t)

    async def remove_adapter(self, key: str) -> None:
        await self.engine.remove_adapter(key)


async def _servable_part(
    trials: int, background: int, threads: int | None
) -> list[tuple[str, str, str]]:
    from loramux.config import EngineConfig, HFEngineConfig
    from loramux.models import ensure_base_model
    from loramux.serve.hf import HFEngine

    if not (DEMO_HR / "adapter_model.safetensors").is_file():
        return [("new version servable", "skipped", f"{DEMO_HR} is missing")]
    cfg = load_config(REPO / "configs" / "default.yaml", environ={})
    model_dir = ensure_base_model(cfg.model, cfg.paths.cache_dir)
    engine = HFEngine(
        model_dir,
        EngineConfig(max_batch_size=16, threads=threads, hf=HFEngineConfig(max_wait_ms=10)),
    )
    await engine.start()
    timed = _TimedEngine(engine)
    base = spec_from_hf_config(model_dir, name=BASE)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        registry = AdapterRegistry.open(work / "data", base, engine=timed)
        await registry.start()
        main = _variant(DEMO_HR, work / "hr-main", alpha=17)
        await registry.register(main, name="hr", actor="bench")  # serving before the timing
        served = registry.assign("hr", "warm")
        assert served is not None
        await _first_token(engine, _request(0, served.version.ref(), 4))  # warm-up

        stop = asyncio.Event()
        done = [0]

        async def keep_busy(k: int) -> None:
            i = 0
            while not stop.is_set():
                ref = served.version.ref() if k % 2 else None
                async for _ in engine.stream(_request(1000 * k + i, ref, 24)):
                    pass
                done[0] += 1
                i += 1

        workers = [asyncio.create_task(keep_busy(k)) for k in range(background)]
        await asyncio.sleep(2.0)  # let the background batch settle
        register_s, first_token_s, total_s, baseline_s = [], [], [], []
        for trial in range(trials):
            t = time.perf_counter()  # side by side: an adapter that is loaded already
            await _first_token(engine, _request(8000 + trial, served.version.ref(), 8))
            baseline_s.append(time.perf_counter() - t)
            folder = _variant(DEMO_HR, work / f"hr-new{trial}", alpha=18 + trial)
            t0 = time.perf_counter()
            result = await registry.register(folder, name="hr", actor="bench")
            t1 = time.perf_counter()
            pinned = registry.assign(f"hr@{result.version.version}", "someone")
            assert pinned is not None
            await _first_token(engine, _request(9000 + trial, pinned.version.ref(), 8))
            t2 = time.perf_counter()
            register_s.append(t1 - t0)
            first_token_s.append(t2 - t1)
            total_s.append(t2 - t0)
        stop.set()
        await asyncio.gather(*workers)
        await registry.close()
    await engine.stop()
    loads = timed.load_s[1:]  # the first load is the version serving before the timing
    own = [r - e for r, e in zip(register_s, loads, strict=True)]
    med = statistics.median
    return [
        (
            "registry's own work (copy, hash, checks, commit)",
            f"{med(own):.3f} s",
            f"max {max(own):.3f} s",
        ),
        (
            "engine load (PEFT, between decode steps)",
            f"{med(loads):.3f} s",
            f"max {max(loads):.3f} s",
        ),
        (
            "then first token of a request pinned to it",
            f"{med(first_token_s):.3f} s",
            f"max {max(first_token_s):.3f} s",
        ),
        (
            "first token, adapter loaded before (same load)",
            f"{med(baseline_s):.3f} s",
            f"max {max(baseline_s):.3f} s",
        ),
        (
            f"new version servable ({background} generations running)",
            f"{med(total_s):.3f} s",
            f"max {max(total_s):.3f} s (<= 2 s); {trials} trials, {done[0]} background requests",
        ),
    ]


async def _first_token(engine: object, request: GenerationRequest) -> None:
    stream = engine.stream(request)  # type: ignore[attr-defined]
    try:
        await anext(stream)
    finally:
        await stream.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--part", choices=["all", "resolve", "servable"], default="all")
    parser.add_argument("--users", type=int, default=20_000, help="requests for the resolve part")
    parser.add_argument("--trials", type=int, default=3, help="registrations timed (servable)")
    parser.add_argument("--background", type=int, default=4, help="concurrent generations")
    parser.add_argument("--threads", type=int, help="torch CPU threads of the hf engine")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    if args.part in ("all", "resolve"):
        rows += asyncio.run(_resolve_part(args.users))
    if args.part in ("all", "servable"):
        rows += asyncio.run(_servable_part(args.trials, args.background, args.threads))
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>{vwidth}}  note")
    print(f"{'-' * width}  {'-' * vwidth}  ----")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>{vwidth}}  {note}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

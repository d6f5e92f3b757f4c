"""Router benchmark: quality of three routers side by side, then latency, in one run.

Quality: each router is fitted on demo/routing/calib.jsonl (target precision 0.95) and measured on
demo/routing/test.jsonl (held out) and demo/routing/conversations.jsonl (follow-ups with history):

  baseline      max cosine similarity to the exemplars, one global threshold (fitted on calib)
  logreg        logistic regression on MiniLM embeddings, exemplars + calib with a "none" class,
                abstaining below a probability threshold chosen by cross-validation
  semantic      loramux's router: head + nearest-neighbour vote, exemplar variants, generic
                negatives, probability/margin/similarity thresholds on out-of-fold evidence,
                calibrated and its decision chosen by the repeated-split check

Latency: one decision end to end (encode + head + k-NN) with 1,000 exemplars, batched decisions
per second, and faiss search alone over 100,000 random unit vectors (HNSW above 50,000, as the
router's index does; exact search shown for comparison).

Rate: decisions per second for `--concurrency` concurrent `auto` decisions (texts from
demo/routing/test.jsonl, the demo routes, no encoding cache), a few rounds, on `--device`:

  one at a time   each request `asyncio.to_thread(router.route, ...)` (the dispatcher before the
                  batcher: one encoder pass per request), all requests at once
  sequential      the same, one request after the other (no contention between worker threads:
                  the best the old path can do)
  batched         each request `RouteBatcher.route(...)`, as `Dispatcher.decide` calls it (one
                  encoder pass per batch of up to `--batch-size` requests, no added wait)

The three alternate round by round; latency is from submission to decision (sequential: one
decision alone).

Run: HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_router.py [--part quality|latency|rate]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from loramux.config import EmbedderConfig, RouteSpec, load_routes
from loramux.embed.device import embedder_device
from loramux.embed.encoder import SentenceTransformerEncoder, make_encoder
from loramux.embed.index import FaissIndex
from loramux.router.batcher import BatchStats, RouteBatcher
from loramux.router.fit.baseline import fit_baseline
from loramux.router.fit.calibration import fit
from loramux.router.fit.data import load_labelled
from loramux.router.fit.evaluation import evaluate
from loramux.router.semantic import SemanticRouter, Thresholds
from loramux.router.training import TrainingOptions

REPO = Path(__file__).resolve().parents[1]
ROUTES = REPO / "configs" / "routes" / "demo.yaml"
CALIB = REPO / "demo" / "routing" / "calib.jsonl"
TEST = REPO / "demo" / "routing" / "test.jsonl"
CONVERSATIONS = REPO / "demo" / "routing" / "conversations.jsonl"

Decide = Callable[[str], Awaitable[object]]


def quality(encoder: Any) -> list[dict[str, Any]]:
    routes = load_routes(ROUTES)
    calib, test = load_labelled(CALIB), load_labelled(TEST)
    conversations = load_labelled(CONVERSATIONS)
    fitters = {
        "baseline (max cosine)": lambda: fit_baseline(routes, calib, 0.95, encoder=encoder),
        "logreg + none class": lambda: (
            fit(
                routes,
                calib,
                0.95,
                encoder=encoder,
                head_weights=(1.0,),
                gates=False,
                per_route=False,
                precision_slack=0.0,
                repeats=1,
                options=TrainingOptions(variants=0, generic_negatives=False),
            ).router
        ),
        "semantic (loramux)": lambda: fit(routes, calib, 0.95, encoder=encoder).router,
    }
    rows = []
    for name, fitter in fitters.items():
        started = time.perf_counter()
        router = fitter()
        seconds = time.perf_counter() - started
        report = evaluate(router, test)
        conv = evaluate(router, conversations)
        rows.append(
            {
                "router": name,
                "precision": report.routed_precision,
                "coverage": report.coverage,
                "oos_sent": report.by_kind["out_of_scope"]["routed"],
                "followups_abstained": 1.0 - report.by_kind["followup"]["routed"],
                "conversations": conv.accuracy_in_scope,
                "fit_s": seconds,
            }
        )
    return rows


def _synthetic_routes(texts: list[str], n_routes: int, total: int) -> list[RouteSpec]:
    pool = [f"{text} (case {i})" if i else text for i in range(4) for text in texts]
    per = total // n_routes
    return [
        RouteSpec(name=f"route{r}", utterances=pool[r * per : (r + 1) * per])
        for r in range(n_routes)
    ]


def latency() -> dict[str, float]:
    calib = [item.text for item in load_labelled(CALIB)]
    test = [item.text for item in load_labelled(TEST)]
    encoder = SentenceTransformerEncoder()  # no cache: every decision encodes its text
    routes = _synthetic_routes(calib + test, 10, 1000)
    router = SemanticRouter(encoder, routes, thresholds=Thresholds())
    queries = [f"{text} please" for text in test]
    router.route_batch(queries[:64])  # warm-up
    single = []
    for text in queries[:200]:
        started = time.perf_counter()
        router.route(text)
        single.append(time.perf_counter() - started)
    batch = [f"{text} thanks" for text in calib + test] * 2
    started = time.perf_counter()
    router.route_batch(batch)
    per_second = len(batch) / (time.perf_counter() - started)

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(100_000, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    started = time.perf_counter()
    hnsw = FaissIndex(384)
    hnsw.add(vectors, np.arange(100_000))
    build_s = time.perf_counter() - started
    exact = FaissIndex(384, exact_max=200_000)
    exact.add(vectors, np.arange(100_000))
    probes = vectors[:200] + 0.03 * rng.normal(size=(200, 384)).astype(np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)

    def search_p50(index: FaissIndex) -> float:
        times = []
        for q in probes:
            started = time.perf_counter()
            index.search(q[None, :], 10)
            times.append(time.perf_counter() - started)
        return float(np.median(times)) * 1000

    found = [hnsw.search(q[None, :], 1)[1][0, 0] for q in probes]
    recall = float(np.mean(np.array(found) == np.arange(len(probes))))
    return {
        "single_p50_ms": float(np.median(single)) * 1000,
        "single_p90_ms": float(np.percentile(single, 90)) * 1000,
        "batched_per_s": per_second,
        "hnsw_search_p50_ms": search_p50(hnsw),
        "exact_search_p50_ms": search_p50(exact),
        "hnsw_recall_at_1": recall,
        "hnsw_build_s": build_s,
    }


def rate(device: str, concurrency: int, rounds: int, batch_size: int) -> dict[str, Any]:
    device = embedder_device(EmbedderConfig(device=device))  # type: ignore[arg-type]
    encoder = make_encoder(device=device, cache_size=0)  # every decision encodes its text
    router = SemanticRouter(encoder, load_routes(ROUTES))
    texts = [item.text for item in load_labelled(TEST)]
    queries = [texts[i % len(texts)] for i in range(concurrency)]
    allowed = set(router.routes)  # what the dispatcher passes when every adapter is served

    async def timed(decide: Decide, text: str) -> float:
        started = time.perf_counter()
        await decide(text)
        return time.perf_counter() - started

    async def one_at_a_time(text: str) -> object:
        return await asyncio.to_thread(router.route, text, allowed=allowed)

    async def concurrent(decide: Decide, texts: list[str]) -> list[float]:
        return await asyncio.gather(*(timed(decide, text) for text in texts))

    async def sequential(decide: Decide, texts: list[str]) -> list[float]:
        return [await timed(decide, text) for text in texts]

    async def measure() -> dict[str, Any]:
        batcher = RouteBatcher(router, max_batch=batch_size)

        async def batched(text: str) -> object:
            return await batcher.route(text, allowed=allowed)

        paths = {
            "one at a time": (one_at_a_time, concurrent),
            "sequential": (one_at_a_time, sequential),
            "batched": (batched, concurrent),
        }
        for decide, run in paths.values():  # warm-up (TorchScript, CUDA kernels, thread pool)
            await run(decide, queries[:64])
        batcher.stats = BatchStats()
        seconds = dict.fromkeys(paths, 0.0)
        latencies: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(rounds):
            for name, (decide, run) in paths.items():
                started = time.perf_counter()
                latencies[name] += await run(decide, queries)
                seconds[name] += time.perf_counter() - started
        total = concurrency * rounds
        rows = {
            name: {
                "per_s": total / seconds[name],
                "p50_ms": float(np.median(latencies[name])) * 1000,
                "p90_ms": float(np.percentile(latencies[name], 90)) * 1000,
            }
            for name in paths
        }
        stats = batcher.stats
        rows["one at a time"]["mean_batch"] = rows["sequential"]["mean_batch"] = 1.0
        rows["batched"]["mean_batch"] = stats.mean_batch
        rows["batched"]["largest_batch"] = float(stats.largest)
        return {
            "device": device,
            "concurrency": concurrency,
            "rounds": rounds,
            "batch_size": batch_size,
            "rows": rows,
            "ratio": rows["batched"]["per_s"] / rows["one at a time"]["per_s"],
            "ratio_sequential": rows["batched"]["per_s"] / rows["sequential"]["per_s"],
        }

    return asyncio.run(measure())


def print_rate(result: dict[str, Any]) -> None:
    print(
        f"## Decisions per second: {result['concurrency']} concurrent `auto` decisions, "
        f"{result['rounds']} rounds, embedder on {result['device']}, batch size "
        f"{result['batch_size']}"
    )
    print()
    print("| path | decisions/s | mean batch | latency p50 (p90) |")
    print("|---|---|---|---|")
    for name, r in result["rows"].items():
        print(
            f"| {name} | {r['per_s']:.0f} | {r['mean_batch']:.1f} "
            f"| {r['p50_ms']:.0f} ms ({r['p90_ms']:.0f} ms) |"
        )
    print()
    print(
        f"batched / one at a time: {result['ratio']:.2f}x; "
        f"batched / sequential: {result['ratio_sequential']:.2f}x"
    )


def print_quality(rows: list[dict[str, Any]]) -> None:
    print("## Quality on demo/routing/test.jsonl (fitted on calib.jsonl, target precision 0.95)")
    print()
    print(
        "| router | routed precision | in-scope coverage | OOS sent | follow-ups abstained "
        "| conversations routed right | fit s |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['router']} | {r['precision']:.3f} | {r['coverage']:.3f} | {r['oos_sent']:.3f} "
            f"| {r['followups_abstained']:.3f} | {r['conversations']:.3f} | {r['fit_s']:.1f} |"
        )


def print_latency(lat: dict[str, float]) -> None:
    print("## Latency")
    print()
    print("| measure | value | goal |")
    print("|---|---|---|")
    print(
        f"| one decision, 1,000 exemplars, p50 (p90) | {lat['single_p50_ms']:.1f} ms "
        f"({lat['single_p90_ms']:.1f} ms) | <= 8 ms |"
    )
    print(f"| batched decisions | {lat['batched_per_s']:.0f} /s | >= 400 /s |")
    print(
        f"| faiss HNSW search, 100,000 vectors, p50 | {lat['hnsw_search_p50_ms']:.3f} ms "
        f"(recall@1 {lat['hnsw_recall_at_1']:.2f}, build {lat['hnsw_build_s']:.0f} s) "
        "| <= 1 ms |"
    )
    print(f"| faiss exact search, 100,000 vectors, p50 | {lat['exact_search_p50_ms']:.3f} ms | - |")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--part", choices=["all", "quality", "latency", "rate"], default="all")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--concurrency", type=int, default=256, help="rate: decisions at once")
    parser.add_argument("--rounds", type=int, default=3, help="rate: rounds per path")
    parser.add_argument("--batch-size", type=int, default=64, help="rate: router.batch_size")
    args = parser.parse_args()
    out: dict[str, Any] = {}
    if args.part in ("all", "quality"):
        out["quality"] = quality(make_encoder())
        print_quality(out["quality"])
        print()
    if args.part in ("all", "latency"):
        out["latency"] = latency()
        print_latency(out["latency"])
        print()
    if args.part in ("all", "rate"):
        out["rate"] = rate(args.device, args.concurrency, args.rounds, args.batch_size)
        print_rate(out["rate"])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print()
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
        f"load average {load:.2f} at the end"
    )
    print(json.dumps(out, default=float))


if __name__ == "__main__":
    main()

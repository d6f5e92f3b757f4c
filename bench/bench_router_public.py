"""Router decisions compared on the same splits: demo data and the public evaluation.

For each data set (`demo`: configs/routes/demo.yaml + demo/routing/{calib,test}.jsonl; `public`:
demo/routing/public/, real SNIPS queries and out-of-scope requests from BIG-bench, built by
demo/routing/public/build.py) every router is fitted on the calibration file with
`--target-precision` (0.95) and measured once on the test file, which nothing was tuned on:

  logreg        logistic regression on MiniLM embeddings, exemplars + calibration data with a
                "none" class, one probability threshold chosen by cross-validation (no slack)
  vote          loramux, decided by the nearest-neighbour vote alone (`--decision vote`)
  head          loramux, decided by the classifier head alone (`--decision head`)
  blend         loramux, head + vote blended (`--decision blend`, the weight chosen held out)
  auto          loramux, whichever of the three routes the most held-out requests at the
                target (`--decision auto`, the default)

The loramux rows calibrate by the repeated-split check (router/fit/resample.py). Latency is one
decision at a time (`router.route(text)`, encoder cache cleared by using each test text once),
p50 over the test texts, after a warm-up.

Run: HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_router_public.py [--data demo public]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from loramux.config import load_routes
from loramux.embed.encoder import make_encoder
from loramux.router.fit.calibration import DECISIONS, fit
from loramux.router.fit.data import load_labelled
from loramux.router.fit.evaluation import evaluate
from loramux.router.training import TrainingOptions

REPO = Path(__file__).resolve().parents[1]
DATA = {
    "demo": (
        REPO / "configs/routes/demo.yaml",
        REPO / "demo/routing/calib.jsonl",
        REPO / "demo/routing/test.jsonl",
    ),
    "public": (
        REPO / "demo/routing/public/routes.yaml",
        REPO / "demo/routing/public/calib.jsonl",
        REPO / "demo/routing/public/test.jsonl",
    ),
}


def fitters(target: float) -> dict[str, Any]:
    logreg = {
        "head_weights": (1.0,),
        "gates": False,
        "per_route": False,
        "precision_slack": 0.0,
        "repeats": 1,
        "options": TrainingOptions(variants=0, generic_negatives=False),
    }
    out: dict[str, Any] = {"logreg": logreg}
    for name in ("vote", "head", "blend", "auto"):
        out[name] = {"head_weights": DECISIONS[name]}
    return out


def run(name: str, target: float, encoder: Any) -> list[dict[str, Any]]:
    routes_path, calib_path, test_path = DATA[name]
    routes = load_routes(routes_path)
    calib, test = load_labelled(calib_path), load_labelled(test_path)
    rows = []
    for router_name, kwargs in fitters(target).items():
        started = time.perf_counter()
        result = fit(routes, calib, target, encoder=encoder, **kwargs)
        seconds = time.perf_counter() - started
        report = evaluate(result.router, test)
        texts = [item.text for item in test if not item.history]
        for text in texts[:10]:
            result.router.route(text + " (warm-up)")
        times = []
        for text in texts[:200]:
            t0 = time.perf_counter()
            result.router.route(text)
            times.append(time.perf_counter() - t0)
        check = result.check.to_dict() if result.check else {}
        rows.append(
            {
                "data": name,
                "router": router_name,
                "weight": result.router.thresholds.head_weight,
                "held_out_precision": check.get("held_out_precision"),
                "precision": report.routed_precision,
                "coverage": report.coverage,
                "oos_sent": report.oos_sent,
                "p50_ms": 1000 * float(np.median(times)),
                "fit_s": seconds,
            }
        )
        print_row(rows[-1])
    return rows


def print_row(r: dict[str, Any]) -> None:
    held = "-" if r["held_out_precision"] is None else f"{r['held_out_precision']:.3f}"
    print(  # noqa: T201 - a benchmark prints its table
        f"| {r['data']} | {r['router']} | {r['weight']:.1f} | {held} | {r['precision']:.3f} | "
        f"{r['coverage']:.3f} | {r['oos_sent']:.3f} | {r['p50_ms']:.1f} | {r['fit_s']:.1f} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", choices=sorted(DATA), default=["demo", "public"])
    parser.add_argument("--target-precision", type=float, default=0.95)
    args = parser.parse_args()
    encoder = make_encoder(cache_size=0)  # every decision encodes, as a fresh request does
    print(  # noqa: T201
        "| data | router | head weight | held-out precision (fit) | test precision | "
        "test coverage | test OOS sent | p50 ms / request | fit s |\n"
        "|---|---|---|---|---|---|---|---|---|",
        flush=True,
    )
    for name in args.data:
        run(name, args.target_precision, encoder)


if __name__ == "__main__":
    main()

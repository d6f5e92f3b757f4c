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

`--outer-splits N` measures instead what item 1 of issue 23 asks, whether routed precision on
fresh data lands on the target, with more test items than one test file has: the public
calibration and test files are pooled (1,010 items) and split N times at random in halves,
stratified by label and kind; each time a router is fitted on one half and measured on the other.
It prints, per target and router, the mean and spread of the fresh halves' precision, coverage
and out-of-scope rate next to the fit's own held-out estimate. It chooses nothing: no setting
of loramux comes from it (the test file stays untuned-on).

The loramux rows calibrate by the repeated-split check (router/fit/resample.py). Latency is one
decision at a time (`router.route(text)`, encoder cache cleared by using each test text once),
p50 over the test texts, after a warm-up.

Run: HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_router_public.py [--data demo public]
     [--routers logreg auto] [--target-precision 0.95 0.97 0.99]   # several targets: one row each
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


def run(
    name: str, target: float, encoder: Any, only: list[str] | None = None
) -> list[dict[str, Any]]:
    routes_path, calib_path, test_path = DATA[name]
    routes = load_routes(routes_path)
    calib, test = load_labelled(calib_path), load_labelled(test_path)
    rows = []
    for router_name, kwargs in fitters(target).items():
        if only and router_name not in only:
            continue
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
                "target": target,
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


def outer(target: float, encoder: Any, splits: int, only: list[str] | None) -> None:
    """Fit on one random half of the pooled public data, measure on the other, `splits` times."""
    routes_path, calib_path, test_path = DATA["public"]
    routes = load_routes(routes_path)
    pooled = load_labelled(calib_path) + load_labelled(test_path)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, item in enumerate(pooled):
        groups.setdefault((item.label, item.kind), []).append(i)
    results: dict[str, list[tuple[float, float, float, float]]] = {}
    for split in range(splits):
        rng = np.random.default_rng(1000 + split)
        first: list[int] = []
        for members in groups.values():
            picked = rng.permutation(members)
            first.extend(int(i) for i in picked[: len(picked) // 2])
        chosen = set(first)
        fit_part = [pooled[i] for i in sorted(chosen)]
        fresh = [item for i, item in enumerate(pooled) if i not in chosen]
        for router_name, kwargs in fitters(target).items():
            if only and router_name not in only:
                continue
            result = fit(routes, fit_part, target, encoder=encoder, seed=split, **kwargs)
            report = evaluate(result.router, fresh)
            check = result.check.to_dict() if result.check else {}
            held = check.get("held_out_precision")
            row = (
                report.routed_precision,
                report.coverage,
                report.oos_sent,
                float("nan") if held is None else held,
            )
            results.setdefault(router_name, []).append(row)
            print(  # noqa: T201 - a benchmark prints its table
                f"  split {split} target {target:.2f} {router_name}: precision {row[0]:.3f} "
                f"coverage {row[1]:.3f} OOS {row[2]:.3f} (fit's held-out {row[3]:.3f})",
                flush=True,
            )
    for router_name, rows in results.items():
        a = np.array(rows)
        print(  # noqa: T201
            f"| {target:.2f} | {router_name} | {len(rows)} | {a[:, 3].mean():.3f} | "
            f"{a[:, 0].mean():.3f} ({a[:, 0].min():.3f}-{a[:, 0].max():.3f}) | "
            f"{a[:, 0].mean() - target:+.3f} | {a[:, 1].mean():.3f} ({a[:, 1].std():.3f}) | "
            f"{a[:, 2].mean():.3f} ({a[:, 2].max():.3f}) |",
            flush=True,
        )


def print_row(r: dict[str, Any]) -> None:
    held = "-" if r["held_out_precision"] is None else f"{r['held_out_precision']:.3f}"
    print(  # noqa: T201 - a benchmark prints its table
        f"| {r['data']} | {r['target']:.2f} | {r['router']} | {r['weight']:.1f} | {held} | "
        f"{r['precision']:.3f} | "
        f"{r['coverage']:.3f} | {r['oos_sent']:.3f} | {r['p50_ms']:.1f} | {r['fit_s']:.1f} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", choices=sorted(DATA), default=["demo", "public"])
    parser.add_argument("--target-precision", type=float, nargs="+", default=[0.95])
    parser.add_argument("--routers", nargs="+", choices=list(fitters(0.95)), default=None)
    parser.add_argument(
        "--outer-splits", type=int, default=0, help="pool the public files, fit/measure N halves"
    )
    args = parser.parse_args()
    if args.outer_splits:
        encoder = make_encoder()
        print(  # noqa: T201
            "| target | router | splits | fit's held-out precision (mean) | fresh precision, "
            "mean (min-max) | mean - target | fresh coverage (sd) | fresh OOS sent (max) |\n"
            "|---|---|---|---|---|---|---|---|",
            flush=True,
        )
        for target in args.target_precision:
            outer(target, encoder, args.outer_splits, args.routers)
        return
    encoder = make_encoder(cache_size=0)  # every decision encodes, as a fresh request does
    print(  # noqa: T201
        "| data | target | router | head weight | held-out precision (fit) | test precision | "
        "test coverage | test OOS sent | p50 ms / request | fit s |\n"
        "|---|---|---|---|---|---|---|---|---|---|",
        flush=True,
    )
    for name in args.data:
        for target in args.target_precision:
            run(name, target, encoder, args.routers)


if __name__ == "__main__":
    main()

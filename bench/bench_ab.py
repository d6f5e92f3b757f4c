"""A/B verdicts under continuous monitoring: the old peeking z-test vs the mSPRT; prints a table.

  python bench/bench_ab.py                      # 10,000 A/A experiments + 2,000 at a +5-point lift
  python bench/bench_ab.py --experiments 2000   # quicker

Each simulated experiment has a main version and one challenger that get ratings in turns (a
50/50 split); after every pair of ratings, once both have `min_ratings`, the verdict is looked
at, as `loramux` does after every `POST /v1/feedback` (and acts on it with auto promotion):

- `z-test (peeking)`: what loramux did before: a two-proportion z-test re-run at every look,
  promote when the challenger is better at p < alpha.
- `mSPRT`: `loramux.adapters.ab_stats.msprt` (normal mixing prior, `mixing_sd`), promote when
  its likelihood ratio reaches 1/alpha with the challenger ahead.
- `z-test (one look)`: the fixed-horizon test looked at ONCE, at the horizon (reference).

A/A rows (both versions at the same true thumbs-up rate) give the false-promotion rate: it must
stay <= alpha for a method whose verdicts are acted on. The lift row (+5 points) gives the power
within the horizon and how many ratings per version a promotion took. Vectorised numpy: the
whole run takes seconds on 2 cores.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from loramux.adapters.ab_stats import msprt  # noqa: E402

METHODS = ("z-test (peeking)", "mSPRT", "z-test (one look)")


@dataclass(frozen=True)
class Outcome:
    """Per method: the step (ratings per version) of the first verdict, and its sign."""

    step: dict[str, np.ndarray]
    """-1 where no verdict was reached within the horizon."""
    sign: dict[str, np.ndarray]
    """+1 promote, -1 roll back, 0 none."""


def _first(hit: np.ndarray) -> np.ndarray:
    """Index of the first True per row, -1 when none."""
    first = hit.argmax(axis=1)
    return np.where(hit.any(axis=1), first, -1)


def simulate(
    p_main: float,
    p_challenger: float,
    *,
    experiments: int,
    horizon: int,
    min_ratings: int,
    alpha: float,
    mixing_sd: float,
    seed: int,
) -> Outcome:
    """Run `experiments` monitored experiments of `horizon` ratings per version (in chunks of
    about a million looks, so memory stays near 100 MB)."""
    rng = np.random.default_rng(seed)
    chunk = max(20, 1_000_000 // horizon)
    z_crit = float(np.sqrt(2) * _erfinv(1 - alpha))
    log_bound = math.log(1 / alpha)
    tau2 = mixing_sd**2
    steps: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}
    signs: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}
    n = np.arange(min_ratings, horizon + 1, dtype=np.float64)
    for start in range(0, experiments, chunk):
        rows = min(chunk, experiments - start)
        x1 = np.cumsum(rng.random((rows, horizon)) < p_challenger, axis=1, dtype=np.int32)
        x2 = np.cumsum(rng.random((rows, horizon)) < p_main, axis=1, dtype=np.int32)
        x1 = x1[:, min_ratings - 1 :].astype(np.float64)
        x2 = x2[:, min_ratings - 1 :].astype(np.float64)
        p1, p2 = x1 / n, x2 / n
        d = p1 - p2
        pooled = (x1 + x2) / (2 * n)
        se = np.sqrt(np.maximum(pooled * (1 - pooled) * (2 / n), 1e-300))
        z = d / se
        q1 = np.clip(p1, 0.5 / n, 1 - 0.5 / n)
        q2 = np.clip(p2, 0.5 / n, 1 - 0.5 / n)
        v = q1 * (1 - q1) / n + q2 * (1 - q2) / n
        log_lr = 0.5 * np.log(v / (v + tau2)) + tau2 * d * d / (2 * v * (v + tau2))
        for method, hit in (
            ("z-test (peeking)", np.abs(z) >= z_crit),
            ("mSPRT", log_lr >= log_bound),
        ):
            first = _first(hit)
            sign = np.where(first >= 0, np.sign(d[np.arange(rows), first]), 0)
            steps[method].append(np.where(first >= 0, first + min_ratings, -1))
            signs[method].append(sign.astype(np.int8))
        last = np.abs(z[:, -1]) >= z_crit
        steps["z-test (one look)"].append(np.where(last, horizon, -1))
        signs["z-test (one look)"].append(np.where(last, np.sign(d[:, -1]), 0).astype(np.int8))
        if start == 0:  # the vectorised test is the one loramux runs
            i, j = rows // 2, n.size // 2
            ref = msprt(
                int(x1[i, j]),
                int(n[j]),
                int(x2[i, j]),
                int(n[j]),
                mixing_sd=mixing_sd,
                alpha=alpha,
            )
            assert math.isclose(ref.log_lr, float(log_lr[i, j]), rel_tol=1e-9, abs_tol=1e-9)
    return Outcome(
        {m: np.concatenate(v) for m, v in steps.items()},
        {m: np.concatenate(v) for m, v in signs.items()},
    )


def _erfinv(y: float) -> float:
    """Inverse error function by bisection (numpy has none; scipy is not a dependency)."""
    lo, hi = 0.0, 10.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if math.erf(mid) < y:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=10_000)
    parser.add_argument("--power-experiments", type=int, default=2_000)
    parser.add_argument("--horizon", type=int, default=2_000, help="A/A ratings per version")
    parser.add_argument("--power-horizon", type=int, default=10_000)
    parser.add_argument("--min-ratings", type=int, default=100)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--mixing-sd", type=float, default=0.05)
    parser.add_argument("--lift", type=float, default=0.05)
    args = parser.parse_args()
    common = {"min_ratings": args.min_ratings, "alpha": args.alpha, "mixing_sd": args.mixing_sd}
    started = time.perf_counter()
    print(
        f"alpha {args.alpha}, min_ratings {args.min_ratings}, mixing_sd {args.mixing_sd}; "
        "verdict looked at after every pair of ratings"
    )
    print()
    print(
        f"A/A: {args.experiments:,} experiments of {args.horizon:,} ratings per version "
        "(false promotions must be <= alpha)"
    )
    print(f"{'true rate':>9}  {'method':<18} {'false promotions':>16} {'any verdict':>12}")
    for rate in (0.5, 0.8):
        out = simulate(
            rate, rate, experiments=args.experiments, horizon=args.horizon, seed=1, **common
        )
        for method in METHODS:
            promoted = float(np.mean(out.sign[method] > 0))
            decided = float(np.mean(out.sign[method] != 0))
            print(f"{rate:>9.2f}  {method:<18} {promoted:>16.2%} {decided:>12.2%}")
    print()
    base = 0.5
    print(
        f"Lift: {args.power_experiments:,} experiments, {base:.2f} -> {base + args.lift:.2f}, "
        f"up to {args.power_horizon:,} ratings per version"
    )
    print(
        f"{'method':<18} {'promoted':>9} {'wrong way':>10} "
        f"{'ratings/version to promote: p50':>32} {'p90':>7}"
    )
    out = simulate(
        base,
        base + args.lift,
        experiments=args.power_experiments,
        horizon=args.power_horizon,
        seed=2,
        **common,
    )
    for method in METHODS[:2]:
        promoted = out.sign[method] > 0
        steps = out.step[method][promoted]
        p50 = f"{np.percentile(steps, 50):,.0f}" if steps.size else "-"
        p90 = f"{np.percentile(steps, 90):,.0f}" if steps.size else "-"
        wrong = float(np.mean(out.sign[method] < 0))
        print(f"{method:<18} {promoted.mean():>9.1%} {wrong:>10.2%} {p50:>32} {p90:>7}")
    # The fixed-horizon design that has 80% power at this lift, for reference.
    z_a, z_b = math.sqrt(2) * _erfinv(1 - args.alpha), 0.8416
    pbar = base + args.lift / 2
    fixed = math.ceil(2 * (z_a + z_b) ** 2 * pbar * (1 - pbar) / args.lift**2)
    print(
        f"{'z-test (one look)':<18} {'80.0%':>9} {'':>10} "
        f"{f'{fixed:,} (planned, looked at once)':>32} {'':>7}"
    )
    print()
    print(f"took {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

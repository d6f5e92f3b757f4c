"""Paired comparisons: the difference of two models on the same items, with a bootstrap interval.

Both models answer the same items, so the uncertainty of their difference comes from which items
were drawn, not from two independent samples. The paired bootstrap redraws items (with
replacement, the same draw for both models), recomputes the difference, and takes the 2.5th and
97.5th percentiles of the redrawn differences as a 95% interval. A weighted score over several
benchmarks redraws each benchmark's items separately (a stratified bootstrap). The generator is
seeded, so the interval is the same on every run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 10_000
CHUNK = 1000


@dataclass(frozen=True)
class PairedDiff:
    """`b - a` on the same items, with its 95% bootstrap interval."""

    a: float
    b: float
    diff: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float | list[float]]:
        return {
            "a": round(self.a, 4),
            "b": round(self.b, 4),
            "diff": round(self.diff, 4),
            "ci95": [round(self.low, 4), round(self.high, 4)],
        }


def paired_bootstrap(
    a: Mapping[str, Sequence[float]],
    b: Mapping[str, Sequence[float]],
    weights: Mapping[str, float] | None = None,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedDiff:
    """Compare per-item scores of two models, grouped by benchmark.

    Args:
        a: per benchmark, the first model's score on each item (1/0 for right/wrong).
        b: the second model's scores on the same items, in the same order.
        weights: per benchmark weight in the combined score, rescaled to sum 1 (default: equal;
            a benchmark the mapping leaves out counts 0).
        resamples: bootstrap redraws.
        seed: seed of the generator.
        confidence: coverage of the interval.

    Returns:
        The weighted mean of each model, `b - a`, and the interval of `b - a`.

    Raises:
        ValueError: the two models' items do not line up.
    """
    names = list(a)
    if set(names) != set(b) or any(len(a[n]) != len(b[n]) or not len(a[n]) for n in names):
        raise ValueError("paired scores need the same non-empty items for both models")
    raw = {n: weights.get(n, 0.0) if weights else 1.0 for n in names}
    total = sum(raw.values())
    if total <= 0:
        raise ValueError("the weights of the compared benchmarks sum to zero")
    w = {n: raw[n] / total for n in names}
    rng = np.random.default_rng(seed)
    mean_a = sum(w[n] * float(np.mean(a[n])) for n in names)
    mean_b = sum(w[n] * float(np.mean(b[n])) for n in names)
    draws = np.zeros(resamples)
    for n in names:
        delta = np.asarray(b[n], dtype=float) - np.asarray(a[n], dtype=float)
        for lo in range(0, resamples, CHUNK):  # bounded memory for large subsets
            hi = min(lo + CHUNK, resamples)
            picks = rng.integers(0, len(delta), size=(hi - lo, len(delta)))
            draws[lo:hi] += w[n] * delta[picks].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return PairedDiff(mean_a, mean_b, mean_b - mean_a, float(low), float(high))

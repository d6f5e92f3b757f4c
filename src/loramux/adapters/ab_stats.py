"""The statistics of A/B verdicts: proportions, their intervals, and tests of a difference.

`msprt` is what experiments are judged by (`experiment.recommend`): a mixture sequential
probability ratio test whose verdicts stay valid however often it is looked at.
`two_proportion_z_test` is the fixed-horizon test, valid for one look only, kept for comparison
(bench/bench_ab.py). `wilson_interval` is the interval shown beside each version's rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0, 1) when n is 0."""
    if n == 0:
        return (0.0, 1.0)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def two_proportion_z_test(
    x1: int, n1: int, x2: int, n2: int, confidence: float = 0.95
) -> tuple[float, float, float, tuple[float, float]]:
    """Pooled two-proportion z-test of p1 - p2 (two-sided), valid for ONE look at a sample
    size fixed in advance. Not what `recommend` uses (it is looked at after every rating);
    kept for comparison (bench/bench_ab.py) and for reports of finished experiments.

    Returns:
        (z, p value, p1 - p2, Wald confidence interval of p1 - p2).
    """
    if n1 == 0 or n2 == 0:
        return (0.0, 1.0, 0.0, (-1.0, 1.0))
    p1, p2 = x1 / n1, x2 / n2
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    z = (p1 - p2) / se if se > 0 else 0.0
    p_value = math.erfc(abs(z) / math.sqrt(2))
    half = NormalDist().inv_cdf(0.5 + confidence / 2) * math.sqrt(
        p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2
    )
    diff = p1 - p2
    return (z, p_value, diff, (diff - half, diff + half))


@dataclass(frozen=True)
class MsprtResult:
    """One evaluation of the mSPRT of p1 - p2."""

    diff: float
    log_lr: float
    """log Lambda_n."""
    half_width: float
    """Half-width of the confidence sequence at the level the test was asked for."""

    def rejects(self, alpha: float) -> bool:
        return self.log_lr >= math.log(1 / alpha)

    def p_value(self) -> float:
        return 1.0 if self.log_lr <= 0 else math.exp(-self.log_lr)


def msprt(x1: int, n1: int, x2: int, n2: int, *, mixing_sd: float, alpha: float) -> MsprtResult:
    """Mixture SPRT of H0: p1 = p2 on two streams of successes, normal approximation.

    With d = x1/n1 - x2/n2, its variance V = p1(1-p1)/n1 + p2(1-p2)/n2 (plug-in) and a normal
    mixing prior N(0, tau^2) on the true difference, the mixture likelihood ratio is
    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2))); under H0 the chance
    that it EVER reaches 1/alpha is at most alpha (Ville's inequality). Inverting it gives the
    confidence sequence d +- sqrt(V (V + tau^2) / tau^2 * (2 log(1/alpha) + log((V + tau^2)/V))).

    Args:
        x1, n1: challenger successes and trials; x2, n2: the main version's.
        mixing_sd: tau, the prior's standard deviation (near the smallest effect worth
            detecting; smaller tests faster for small effects, slower for large ones).
        alpha: the level of the confidence sequence.

    Returns:
        The difference, log Lambda and the confidence sequence's half-width. With no trials on
        a side: no evidence (log Lambda 0, half-width 1).
    """
    if n1 == 0 or n2 == 0:
        return MsprtResult(0.0, 0.0, 1.0)
    p1, p2 = x1 / n1, x2 / n2
    # A rate of exactly 0 or 1 has no plug-in variance: use half a success (a continuity fix).
    q1 = min(max(p1, 0.5 / n1), 1 - 0.5 / n1)
    q2 = min(max(p2, 0.5 / n2), 1 - 0.5 / n2)
    v = q1 * (1 - q1) / n1 + q2 * (1 - q2) / n2
    tau2 = mixing_sd * mixing_sd
    d = p1 - p2
    log_lr = 0.5 * math.log(v / (v + tau2)) + tau2 * d * d / (2 * v * (v + tau2))
    half = math.sqrt(v * (v + tau2) / tau2 * (2 * math.log(1 / alpha) + math.log((v + tau2) / v)))
    return MsprtResult(d, log_lr, half)

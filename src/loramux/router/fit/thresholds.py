"""Choosing abstention thresholds from scored, labelled items.

`choose_thresholds` searches the margin and nearest-example gates on a small grid and, for each,
the lowest probability threshold at which routed precision still reaches the target and at most
`max_oos_sent` of the out-of-scope items are routed; it keeps the combination that routes the most
in-scope items. It can then raise single routes' thresholds where their own precision falls short.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from loramux.router.evidence import Scored
from loramux.router.head import NONE
from loramux.router.semantic import Thresholds

_MARGINS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
_SIM_QUANTILES = (0.0, 1.0, 2.0, 5.0, 10.0)
_MIN_ROUTE_SUPPORT = 8
"""Items routed to a route before its own threshold may be raised."""


@dataclass(frozen=True)
class CalibrationEstimate:
    """Quality expected from the chosen thresholds, measured on out-of-fold predictions.

    Attributes:
        precision: share of routed items routed to their right route.
        coverage: share of in-scope items routed.
        oos_sent: share of out-of-scope items routed to some route.
        in_scope: in-scope items measured.
        out_of_scope: out-of-scope items measured.
        met_target: whether `precision` reached the target.
    """

    precision: float
    coverage: float
    oos_sent: float
    in_scope: int
    out_of_scope: int
    met_target: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON/YAML-ready mapping."""
        return {
            "precision": round(self.precision, 4),
            "coverage": round(self.coverage, 4),
            "oos_sent": round(self.oos_sent, 4),
            "in_scope": self.in_scope,
            "out_of_scope": self.out_of_scope,
            "met_target": self.met_target,
        }


def choose_thresholds(
    scored: Scored,
    labels: Sequence[str],
    *,
    target_precision: float,
    max_oos_sent: float = 0.02,
    per_route: bool = True,
    gates: bool = True,
    forgive: int = 1,
) -> tuple[Thresholds, CalibrationEstimate]:
    """Thresholds that reach `target_precision` on scored items with the most in-scope coverage.

    Args:
        scored: unthresholded scores of the labelled items.
        labels: the right route (or `NONE`) of each item.
        target_precision: least routed precision.
        max_oos_sent: most out-of-scope items that may be routed, as a share.
        per_route: also raise single routes' thresholds where their precision falls short.
        gates: search margin and similarity thresholds too (off: both stay at their minimum).
        forgive: out-of-scope items routed above the `max_oos_sent` share that are forgiven, so
            that one odd item in a small calibration set does not set the threshold alone.

    Returns:
        The thresholds and the quality they give on these items.
    """
    best = np.array([b or "" for b in scored.best])
    lab = np.array(labels)
    correct = best == lab
    oos = lab == NONE
    in_scope = ~oos
    prob = scored.probability.astype(np.float64)
    margins = _MARGINS if gates else (-1.0,)
    sim_ok = scored.similarity[correct & in_scope]
    sims = (
        sorted({-1.0, *(float(np.percentile(sim_ok, q)) for q in _SIM_QUANTILES if len(sim_ok))})
        if gates
        else [-1.0]
    )
    choice: tuple[float, float, float] | None = None  # (probability, margin, similarity)
    best_key: tuple[float, ...] = ()
    for m in margins:
        for s in sims:
            eligible = (scored.margin >= m) & (scored.similarity >= s)
            t, cov, prec = _best_probability(
                prob, eligible, correct, oos, in_scope, target_precision, max_oos_sent, forgive
            )
            key = (round(cov, 3), prec, m, s)
            if t is not None and key > best_key:
                best_key, choice = key, (t, m, s)
    if choice is None:
        thresholds = Thresholds(probability=1.01, margin=1.0, similarity=1.0)
    else:
        t, m, s = choice
        thresholds = Thresholds(probability=t, margin=m, similarity=s)
        if per_route:
            thresholds = _per_route(thresholds, scored, best, correct, target_precision)
    return thresholds, _estimate(thresholds, scored, best, correct, oos, in_scope)


def _best_probability(
    prob: npt.NDArray[np.float64],
    eligible: npt.NDArray[np.bool_],
    correct: npt.NDArray[np.bool_],
    oos: npt.NDArray[np.bool_],
    in_scope: npt.NDArray[np.bool_],
    target: float,
    max_oos: float,
    forgive: int,
) -> tuple[float | None, float, float]:
    """Lowest probability threshold meeting both targets: (threshold, coverage, precision)."""
    idx = np.flatnonzero(eligible)
    if not len(idx):
        return None, 0.0, 0.0
    idx = idx[np.argsort(-prob[idx], kind="stable")]
    p = prob[idx]
    routed = np.arange(1, len(idx) + 1)
    precision = np.cumsum(correct[idx]) / routed
    oos_rate = np.maximum(np.cumsum(oos[idx]) - forgive, 0) / max(int(oos.sum()), 1)
    coverage = np.cumsum(in_scope[idx] & True) / max(int(in_scope.sum()), 1)
    # A threshold routes every item with probability >= it: only cut between distinct values.
    cut = np.append(p[1:] < p[:-1], True)
    ok = cut & (precision >= target) & (oos_rate <= max_oos)
    if not ok.any():
        return None, 0.0, 0.0
    k = int(np.flatnonzero(ok)[-1])
    return float(p[k]), float(coverage[k]), float(precision[k])


def _per_route(
    thresholds: Thresholds,
    scored: Scored,
    best: npt.NDArray[np.str_],
    correct: npt.NDArray[np.bool_],
    target: float,
) -> Thresholds:
    passed = _passes(thresholds, scored, best)
    own: dict[str, float] = {}
    for route in sorted(set(best[passed]) - {""}):
        idx = np.flatnonzero(passed & (best == route))
        if len(idx) < _MIN_ROUTE_SUPPORT or correct[idx].mean() >= target:
            continue
        idx = idx[np.argsort(-scored.probability[idx], kind="stable")]
        precision = np.cumsum(correct[idx]) / np.arange(1, len(idx) + 1)
        ok = np.flatnonzero(precision >= target)
        own[str(route)] = float(scored.probability[idx[ok[-1]]]) if len(ok) else 1.01
    return replace(thresholds, per_route=own)


def passes(thresholds: Thresholds, scored: Scored) -> npt.NDArray[np.bool_]:
    """Which rows of `scored` the thresholds route."""
    return _passes(thresholds, scored, np.array([b or "" for b in scored.best]))


def _passes(
    thresholds: Thresholds, scored: Scored, best: npt.NDArray[np.str_]
) -> npt.NDArray[np.bool_]:
    need = np.array([thresholds.for_route(str(b)) for b in best])
    passed: npt.NDArray[np.bool_] = (
        (best != "")
        & (scored.probability >= need)
        & (scored.margin >= thresholds.margin)
        & (scored.similarity >= thresholds.similarity)
    )
    return passed


def _estimate(
    thresholds: Thresholds,
    scored: Scored,
    best: npt.NDArray[np.str_],
    correct: npt.NDArray[np.bool_],
    oos: npt.NDArray[np.bool_],
    in_scope: npt.NDArray[np.bool_],
) -> CalibrationEstimate:
    passed = _passes(thresholds, scored, best)
    n_routed = int(passed.sum())
    return CalibrationEstimate(
        precision=float(correct[passed].mean()) if n_routed else 1.0,
        coverage=float(passed[in_scope].mean()) if in_scope.any() else 0.0,
        oos_sent=float(passed[oos].mean()) if oos.any() else 0.0,
        in_scope=int(in_scope.sum()),
        out_of_scope=int(oos.sum()),
        met_target=True,
    )

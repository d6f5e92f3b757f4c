"""The precision-coverage curve of a router on labelled data, so an operator can pick a point.

Each point is what the router would do with one probability threshold (one for every route; the
margin and nearest-example gates of a fitted semantic router stay as fitted): routed precision
(out-of-scope items routed count as wrong), in-scope coverage and the share of out-of-scope items
routed. The point the router's own thresholds reach is measured by the evaluation itself and is
marked on the chart and in the table. Conversation items (with history) are left out of the curve:
their decision depends on more than one threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from loramux.router.decision import RouteDecision
from loramux.router.fit.data import LabelledItem
from loramux.router.head import NONE


@dataclass(frozen=True)
class CurvePoint:
    """What one probability threshold gives."""

    threshold: float
    precision: float
    coverage: float
    oos_sent: float
    routed: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "threshold": round(self.threshold, 4),
            "precision": round(self.precision, 4),
            "coverage": round(self.coverage, 4),
            "oos_sent": round(self.oos_sent, 4),
            "routed": self.routed,
        }


def precision_curve(
    router: Any, data: Sequence[LabelledItem], decisions: Sequence[RouteDecision]
) -> list[CurvePoint]:
    """The curve as the probability threshold falls, one point per distinct score.

    Args:
        router: the evaluated router; a semantic router's gates are applied as fitted.
        data: the labelled items.
        decisions: the router's decisions for `data` (scores of the others' best routes).

    Returns:
        Points from the strictest threshold to the loosest.
    """
    rows = [i for i, item in enumerate(data) if not item.history]
    if not rows:
        return []
    labels = np.array([data[i].label for i in rows])
    if hasattr(router, "score") and hasattr(router, "thresholds"):
        scored = router.score(router.encoder.encode([data[i].text for i in rows]))
        t = router.thresholds
        best = np.array([b or "" for b in scored.best])
        gated = (best != "") & (scored.margin >= t.margin) & (scored.similarity >= t.similarity)
        score = np.where(gated, scored.probability, -np.inf).astype(np.float64)
    else:
        best = np.array(
            [decisions[i].alternatives[0][0] if decisions[i].alternatives else "" for i in rows]
        )
        score = np.array([decisions[i].score for i in rows], np.float64)
        score = np.where(best != "", score, -np.inf)
    return _sweep(score, best, labels)


def _sweep(
    score: npt.NDArray[np.float64], best: npt.NDArray[np.str_], labels: npt.NDArray[np.str_]
) -> list[CurvePoint]:
    order = np.argsort(-score, kind="stable")
    order = order[np.isfinite(score[order])]
    if not len(order):
        return []
    s = score[order]
    correct = (best == labels)[order]
    oos = (labels == NONE)[order]
    n_in = max(int((labels != NONE).sum()), 1)
    n_oos = max(int((labels == NONE).sum()), 1)
    routed = np.arange(1, len(order) + 1)
    precision = np.cumsum(correct) / routed
    coverage = np.cumsum(~oos) / n_in
    oos_sent = np.cumsum(oos) / n_oos
    cut = np.flatnonzero(np.append(s[1:] < s[:-1], True))
    return [
        CurvePoint(
            float(s[k]), float(precision[k]), float(coverage[k]), float(oos_sent[k]), int(k) + 1
        )
        for k in cut
    ]


def table_points(curve: Sequence[CurvePoint], rows: int = 12) -> list[CurvePoint]:
    """About `rows` points spread evenly over coverage, for a readable table."""
    if len(curve) <= rows:
        return list(curve)
    marks = np.linspace(curve[0].coverage, curve[-1].coverage, rows)
    picked: list[CurvePoint] = []
    for mark in marks:
        point = min(curve, key=lambda p: abs(p.coverage - mark))
        if point not in picked:
            picked.append(point)
    return picked


def format_curve(
    curve: Sequence[CurvePoint], chosen: tuple[float, float, float], rows: int = 12
) -> str:
    """The curve as an aligned table, with the router's own point as the marked row.

    Args:
        curve: the points.
        chosen: (precision, coverage, OOS sent) the router's thresholds reached.
        rows: about how many curve rows to show.
    """
    lines = [f"{'threshold':>9} {'precision':>9} {'coverage':>8} {'OOS sent':>8} {'routed':>6}"]
    for p in table_points(curve, rows):
        lines.append(
            f"{p.threshold:>9.3f} {p.precision:>9.3f} {p.coverage:>8.3f} "
            f"{p.oos_sent:>8.3f} {p.routed:>6}"
        )
    precision, coverage, oos_sent = chosen
    lines.append(
        f"{'fitted':>9} {precision:>9.3f} {coverage:>8.3f} {oos_sent:>8.3f}"
        "        <- the router's own thresholds"
    )
    return "\n".join(lines)

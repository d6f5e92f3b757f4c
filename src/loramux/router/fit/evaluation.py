"""Evaluating a router on labelled data: the numbers, the charts, the per-item predictions.

Definitions (label "none" = out of scope; "routed" = sent along a route, not abstained):
routed precision = routed to the right route / routed (out-of-scope items routed count as wrong);
coverage = in-scope items routed / in-scope items; accuracy (in scope) = in-scope items routed to
the right route / in-scope items; OOS sent = out-of-scope items routed / out-of-scope items, and
OOS rejection is its complement. Conversation items (`messages`) are routed with their history.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loramux.config import RouterConfig, load_routes, read_yaml
from loramux.embed.encoder import Encoder
from loramux.fileio import atomic_write_text
from loramux.router.base import Router
from loramux.router.decision import RouteDecision
from loramux.router.fit.curve import CurvePoint, format_curve, precision_curve
from loramux.router.fit.data import LabelledItem, load_labelled
from loramux.router.fit.plots import confusion_png, precision_coverage_png
from loramux.router.head import NONE

ABSTAIN = "(abstain)"
"""Confusion-matrix column of abstained requests."""


@dataclass(frozen=True)
class RouteMetrics:
    """Precision, recall and F1 of one route."""

    precision: float
    recall: float
    f1: float
    support: int
    routed: int


@dataclass(frozen=True)
class RouterReport:
    """A router's quality on one labelled data set; see the module docstring for definitions."""

    items: int
    in_scope: int
    out_of_scope: int
    routed_precision: float
    coverage: float
    accuracy_in_scope: float
    abstain_rate: float
    oos_sent: float
    oos_rejection: float
    per_route: dict[str, RouteMetrics]
    confusion_rows: list[str]
    confusion_cols: list[str]
    confusion: list[list[int]]
    by_kind: dict[str, dict[str, float]]
    targets: dict[str, int]
    curve: list[CurvePoint] = field(repr=False)
    """Precision-coverage curve over the probability threshold (`fit/curve.py`)."""
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "items": self.items,
            "in_scope": self.in_scope,
            "out_of_scope": self.out_of_scope,
            "routed_precision": round(self.routed_precision, 4),
            "coverage": round(self.coverage, 4),
            "accuracy_in_scope": round(self.accuracy_in_scope, 4),
            "abstain_rate": round(self.abstain_rate, 4),
            "oos_sent": round(self.oos_sent, 4),
            "oos_rejection": round(self.oos_rejection, 4),
            "per_route": {
                name: {
                    "precision": round(m.precision, 4),
                    "recall": round(m.recall, 4),
                    "f1": round(m.f1, 4),
                    "support": m.support,
                    "routed": m.routed,
                }
                for name, m in self.per_route.items()
            },
            "confusion": {
                "rows": self.confusion_rows,
                "cols": self.confusion_cols,
                "matrix": self.confusion,
            },
            "by_kind": self.by_kind,
            "targets": self.targets,
            "curve": [point.to_dict() for point in self.curve],
            "files": self.files,
        }

    def format_table(self) -> str:
        """The headline numbers, per-route metrics and per-kind breakdown as aligned text."""
        lines = [
            f"items {self.items} (in scope {self.in_scope}, out of scope {self.out_of_scope})",
            f"routed precision   {self.routed_precision:.3f}",
            f"coverage           {self.coverage:.3f}",
            f"accuracy in scope  {self.accuracy_in_scope:.3f}",
            f"abstain rate       {self.abstain_rate:.3f}",
            f"OOS sent           {self.oos_sent:.3f}  (rejection {self.oos_rejection:.3f})",
            "",
            f"{'route':<16} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8} {'routed':>7}",
        ]
        for name, m in self.per_route.items():
            lines.append(
                f"{name:<16} {m.precision:>9.3f} {m.recall:>7.3f} {m.f1:>6.3f} "
                f"{m.support:>8} {m.routed:>7}"
            )
        if self.by_kind:
            lines += ["", f"{'kind':<16} {'items':>6} {'routed':>7} {'correct':>8}"]
            for kind, row in self.by_kind.items():
                items, sent, right = int(row["items"]), row["routed"], row["correct"]
                lines.append(f"{kind:<16} {items:>6} {sent:>7.3f} {right:>8.3f}")
        if self.curve:
            lines += ["", "precision-coverage curve (one probability threshold for every route):"]
            chosen = (self.routed_precision, self.coverage, self.oos_sent)
            lines.append(format_curve(self.curve, chosen))
        for name, path in self.files.items():
            lines.append(f"{name}: {path}")
        return "\n".join(lines)


def evaluate(
    router: Router,
    data: Sequence[LabelledItem],
    *,
    out_dir: Path | None = None,
    predictions_path: Path | None = None,
) -> RouterReport:
    """Route every item and measure the router.

    Args:
        router: the router (its `allowed` is not restricted).
        data: labelled items; items with history are routed with it.
        out_dir: where to write `confusion.png`, `precision_coverage.png`, the whole curve as
            `precision_coverage.csv`, and `report.json`.
        predictions_path: where to write one JSON line per item (text, label, kind, target,
            route, adapter, score, margin, reason).

    Returns:
        The report.
    """
    decisions = router.route_batch(
        [item.text for item in data], histories=[item.history for item in data]
    )
    report = _measure(list(router.routes), data, decisions)
    report = RouterReport(**{**report.__dict__, "curve": precision_curve(router, data, decisions)})
    files: dict[str, str] = {}
    if predictions_path is not None:
        write_predictions(predictions_path, data, decisions)
        files["predictions"] = str(predictions_path)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        png = out_dir / "confusion.png"
        if confusion_png(report.confusion, report.confusion_rows, report.confusion_cols, png):
            files["confusion matrix"] = str(png)
        png = out_dir / "precision_coverage.png"
        point = (report.coverage, report.routed_precision)
        if report.curve and precision_coverage_png(report.curve, point, png):
            files["precision-coverage curve"] = str(png)
        if report.curve:
            csv = out_dir / "precision_coverage.csv"
            rows = ["threshold,precision,coverage,oos_sent,routed"]
            rows += [
                f"{p.threshold:.6f},{p.precision:.6f},{p.coverage:.6f},{p.oos_sent:.6f},{p.routed}"
                for p in report.curve
            ]
            atomic_write_text(csv, "\n".join(rows) + "\n")
            files["precision-coverage table"] = str(csv)
        files["report"] = str(out_dir / "report.json")
    report = RouterReport(**{**report.__dict__, "files": files})
    if out_dir is not None:
        atomic_write_text(out_dir / "report.json", json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def evaluate_router(
    routes_or_fitted_path: Path,
    data_path: Path,
    *,
    out_dir: Path,
    predictions_path: Path | None = None,
    encoder: Encoder | None = None,
    kind: str = "semantic",
) -> RouterReport:
    """Evaluate a fitted router (`fitted.yaml`) or an unfitted one built from a routes file.

    Args:
        routes_or_fitted_path: `fitted.yaml` from `loramux router fit`, a router version store
            (its active version), or a routes YAML.
        data_path: labelled JSONL.
        out_dir: folder for the charts and `report.json`.
        predictions_path: optional JSONL of per-item predictions.
        encoder: text encoder; default: the embedded MiniLM.
        kind: router kind for a routes file (`semantic` or `baseline`); a fitted file names its own.

    Returns:
        The report.

    Raises:
        ConfigError: a YAML file is invalid.
        CalibrationDataError: the data file is invalid or names unknown routes.
        RouterNotFittedError: the fitted router does not match the encoder.
    """
    from loramux.embed.encoder import make_encoder
    from loramux.router.build import ROUTER_CLS, unfitted_router
    from loramux.router.persist import load_router
    from loramux.router.versions import resolve_fitted

    encoder = encoder or make_encoder()
    router: Router
    routes_or_fitted_path = resolve_fitted(routes_or_fitted_path)  # a version store: its active
    if "format" in read_yaml(routes_or_fitted_path):
        router = load_router(routes_or_fitted_path, encoder)
    else:
        if kind not in ROUTER_CLS:
            raise ValueError(f"unknown router kind {kind!r}; choose from {sorted(ROUTER_CLS)}")
        config = RouterConfig.model_validate({"kind": kind})
        router = unfitted_router(config, encoder, load_routes(routes_or_fitted_path))
    data = load_labelled(data_path, list(router.routes))
    return evaluate(router, data, out_dir=out_dir, predictions_path=predictions_path)


def write_predictions(
    path: Path, data: Sequence[LabelledItem], decisions: Sequence[RouteDecision]
) -> None:
    """One JSON line per item: text, label, kind, target, route, adapter, score, margin, reason."""
    lines = []
    for item, d in zip(data, decisions, strict=True):
        row = {
            "text": item.text,
            "label": item.label,
            "kind": item.kind or None,
            "target": d.target.value,
            "route": d.route,
            "adapter": d.adapter,
            "score": round(d.score, 4),
            "margin": round(d.margin, 4),
            "reason": d.reason,
        }
        lines.append(json.dumps(row, ensure_ascii=False))
    atomic_write_text(path, "\n".join(lines) + "\n")


def _measure(
    routes: list[str], data: Sequence[LabelledItem], decisions: Sequence[RouteDecision]
) -> RouterReport:
    labels = np.array([item.label for item in data])
    pred = np.array([d.route or "" for d in decisions])
    routed = pred != ""
    in_scope = labels != NONE
    correct = routed & (pred == labels)
    n_in, n_oos = int(in_scope.sum()), int((~in_scope).sum())

    def share(num: float, den: float, empty: float = 0.0) -> float:
        return num / den if den else empty

    per_route = {}
    for name in routes:
        support = int((labels == name).sum())
        sent = int((pred == name).sum())
        hits = int((correct & (labels == name)).sum())
        p, r = share(hits, sent, 1.0), share(hits, support)
        per_route[name] = RouteMetrics(p, r, share(2 * p * r, p + r), support, sent)
    rows = [*routes, NONE]
    cols = [*routes, ABSTAIN]
    matrix = [
        [int(((labels == row) & (pred == (col if col != ABSTAIN else ""))).sum()) for col in cols]
        for row in rows
    ]
    by_kind: dict[str, dict[str, float]] = {}
    for kind in sorted({item.kind for item in data} - {""}):
        mask = np.array([item.kind == kind for item in data])
        by_kind[kind] = {
            "items": int(mask.sum()),
            "routed": float(routed[mask].mean()),
            "correct": float(((pred == labels) | (~routed & ~in_scope))[mask].mean()),
        }
    return RouterReport(
        items=len(data),
        in_scope=n_in,
        out_of_scope=n_oos,
        routed_precision=share(int(correct.sum()), int(routed.sum()), 1.0),
        coverage=share(int((routed & in_scope).sum()), n_in),
        accuracy_in_scope=share(int((correct & in_scope).sum()), n_in),
        abstain_rate=share(int((~routed).sum()), len(data)),
        oos_sent=share(int((routed & ~in_scope).sum()), n_oos),
        oos_rejection=share(int((~routed & ~in_scope).sum()), n_oos, 1.0),
        per_route=per_route,
        confusion_rows=rows,
        confusion_cols=cols,
        confusion=matrix,
        by_kind=by_kind,
        targets=dict(Counter(d.target.value for d in decisions)),
        curve=[],
    )

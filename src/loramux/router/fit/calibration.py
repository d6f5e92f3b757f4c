"""Fitting a router to labelled data: head training, cross-validated thresholds, fit summary.

`fit` trains the head on the route exemplars (plus variants and generic negatives) and the labelled
data, and chooses the abstention thresholds on *out-of-fold* predictions: the labelled data is split
into folds, each fold is scored by a head trained without it, and the thresholds are set so that
routed precision on those predictions reaches the target while routing as many in-scope requests as
possible and at most `max_oos_sent` of the out-of-scope ones. The final head is then trained on all
of the data. Thresholds are never fitted on the predictions of a head that saw the same items.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from loramux.config import RouteSpec, load_routes
from loramux.embed.encoder import Encoder
from loramux.errors import CalibrationDataError
from loramux.router.evidence import Evidence
from loramux.router.fit.data import LabelledItem, load_labelled
from loramux.router.fit.thresholds import CalibrationEstimate, choose_thresholds
from loramux.router.head import NONE
from loramux.router.semantic import SemanticRouter
from loramux.router.training import Kind, TrainingOptions, build_training

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitResult:
    """A fitted semantic router and what calibration expects of it."""

    router: SemanticRouter
    estimate: CalibrationEstimate
    target_precision: float


def fit(
    routes: Sequence[RouteSpec],
    data: Sequence[LabelledItem],
    target_precision: float = 0.95,
    *,
    encoder: Encoder,
    options: TrainingOptions | None = None,
    folds: int = 5,
    repeats: int = 3,
    head_weights: Sequence[float] = (0.3, 0.5, 0.7),
    max_oos_sent: float = 0.02,
    precision_slack: float = 0.01,
    per_route: bool = True,
    gates: bool = True,
    seed: int = 0,
    **router_kwargs: Any,
) -> FitResult:
    """Fit a semantic router: head on exemplars + data, thresholds on out-of-fold evidence.

    Args:
        routes: the routes.
        data: labelled items (items with history are left out: a follow-up's label is about
            the conversation, not its text alone).
        target_precision: routed precision the thresholds must reach.
        encoder: text encoder.
        options: training-set and head options.
        folds: cross-validation folds (at least 2).
        repeats: cross-validation passes with different splits, pooled (smoother thresholds).
        head_weights: blend weights of head vs neighbour vote to choose from.
        max_oos_sent: most out-of-scope items that may be routed, as a share.
        precision_slack: calibrate to `target_precision + precision_slack`, since thresholds
            chosen on a sample look better on it than on new data.
        per_route: raise a route's own threshold where its routed precision is below target.
        gates: use the margin and nearest-example gates (off: probability threshold only).
        seed: fold assignment seed.
        **router_kwargs: passed to `SemanticRouter` (kb_probe, neighbours, ...).

    Returns:
        The fitted router and its out-of-fold estimate.

    Raises:
        CalibrationDataError: a label names no route, or there is too little data.
    """
    options = options or TrainingOptions()
    usable = [item for item in data if not item.history]
    check_labels(usable, {spec.name for spec in routes})
    labels = [item.label for item in usable]
    training = build_training(encoder, routes, [(i.text, i.label) for i in usable], options)
    labelled = training.kinds == Kind.LABELLED
    labelled_ids = training.ids[labelled]
    vectors = training.vectors[labelled]
    parts: list[Evidence] = []
    for rep in range(repeats):
        fold_of = _folds(labels, folds, seed + rep)
        fold_parts: list[Evidence] = []
        order: list[npt.NDArray[np.int64]] = []
        for fold in range(folds):
            held = np.flatnonzero(fold_of == fold)
            if not len(held):
                continue
            keep = ~np.isin(training.ids, labelled_ids[held])
            router = SemanticRouter(
                encoder, routes, training=training.select(keep), options=options, **router_kwargs
            )
            fold_parts.append(router.evidence(vectors[held]))
            order.append(held)
        parts.append(_reorder(fold_parts, order, len(usable)))
    evidence = Evidence.concat(parts)
    pooled_labels = labels * repeats
    target = min(target_precision + precision_slack, 1.0)
    candidates = []
    for weight in head_weights:
        thresholds, estimate = choose_thresholds(
            evidence.combine(weight),
            pooled_labels,
            target_precision=target,
            max_oos_sent=max_oos_sent,
            per_route=per_route,
            gates=gates,
            forgive=repeats,
        )
        key = (round(estimate.coverage, 3), estimate.precision, -abs(weight - 0.5))
        candidates.append((key, replace(thresholds, head_weight=weight), estimate))
    _, thresholds, estimate = max(candidates, key=lambda c: c[0])
    estimate = replace(
        estimate,
        in_scope=estimate.in_scope // repeats,
        out_of_scope=estimate.out_of_scope // repeats,
        met_target=estimate.precision >= target_precision,
    )
    if not estimate.met_target:
        logger.warning(
            "router fit: out-of-fold precision %.3f is below the target %.3f; add exemplars or "
            "labelled data",
            estimate.precision,
            target_precision,
        )
    router = SemanticRouter(
        encoder,
        routes,
        training=training,
        options=options,
        thresholds=thresholds,
        **router_kwargs,
    )
    return FitResult(router, estimate, target_precision)


def _reorder(parts: Sequence[Evidence], order: Sequence[npt.NDArray[np.int64]], n: int) -> Evidence:
    """Fold-by-fold evidence back in item order."""
    stacked = Evidence.concat(parts)
    position = np.empty(n, np.int64)
    position[np.concatenate(order)] = np.arange(n)
    return stacked.take(position)


def check_labels(items: Sequence[LabelledItem], routes: set[str]) -> None:
    """Raise if a label names no route, or there is no in-scope item.

    Raises:
        CalibrationDataError: with the unknown labels and the known routes.
    """
    unknown = sorted({item.label for item in items} - routes - {NONE})
    if unknown:
        raise CalibrationDataError(
            f"labels {', '.join(map(repr, unknown))} name no route; routes are "
            f'{", ".join(sorted(routes))} (use "none" for out-of-scope requests)'
        )
    if not any(item.label != NONE for item in items):
        raise CalibrationDataError("the labelled data has no in-scope item (every label is none)")


def _folds(labels: Sequence[str], folds: int, seed: int) -> npt.NDArray[np.int64]:
    """Stratified fold number per item."""
    if folds < 2:
        raise CalibrationDataError("cross-validation needs at least 2 folds")
    if len(labels) < folds:
        raise CalibrationDataError(
            f"{len(labels)} labelled items are too few for {folds}-fold calibration; "
            "label at least a few dozen requests"
        )
    rng = np.random.default_rng(seed)
    out = np.zeros(len(labels), np.int64)
    for label in sorted(set(labels)):
        idx = np.flatnonzero(np.array(labels) == label)
        rng.shuffle(idx)
        out[idx] = (np.arange(len(idx)) + rng.integers(folds)) % folds
    return out


@dataclass(frozen=True)
class FitSummary:
    """What `fit_router` did, for the CLI to print.

    Attributes:
        kind: `semantic` or `baseline`.
        path: the fitted router's YAML file.
        routes: number of routes.
        items: labelled items used.
        target_precision: the precision target.
        estimate: out-of-fold quality (semantic router; None for the baseline).
        thresholds: the fitted thresholds, as a mapping.
        seconds: wall time of the fit.
    """

    kind: str
    path: Path
    routes: int
    items: int
    target_precision: float
    estimate: CalibrationEstimate | None
    thresholds: dict[str, Any]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "kind": self.kind,
            "path": str(self.path),
            "routes": self.routes,
            "items": self.items,
            "target_precision": self.target_precision,
            "estimate": self.estimate.to_dict() if self.estimate else None,
            "thresholds": self.thresholds,
            "seconds": round(self.seconds, 2),
        }

    def format_table(self) -> str:
        """A few aligned lines for a terminal."""
        rows = [
            ("router", self.kind),
            ("saved to", str(self.path)),
            ("routes / labelled items", f"{self.routes} / {self.items}"),
            ("target precision", f"{self.target_precision:.3f}"),
        ]
        if self.estimate is not None:
            e = self.estimate
            rows += [
                (
                    "out-of-fold precision",
                    f"{e.precision:.3f}" + ("" if e.met_target else "  (below target: add data)"),
                ),
                ("out-of-fold coverage", f"{e.coverage:.3f} of {e.in_scope} in-scope"),
                ("out-of-fold OOS sent", f"{e.oos_sent:.3f} of {e.out_of_scope} out-of-scope"),
            ]
        rows += [(key, _fmt(value)) for key, value in self.thresholds.items()]
        rows.append(("fit time", f"{self.seconds:.1f} s"))
        width = max(len(key) for key, _ in rows)
        return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items()) or "-"
    return str(value)


def fit_router(
    routes_path: Path,
    data_path: Path,
    target_precision: float = 0.95,
    out_path: Path = Path("fitted.yaml"),
    *,
    kind: str = "semantic",
    encoder: Encoder | None = None,
) -> FitSummary:
    """Fit a router on a routes file and labelled data, and save it (the CLI's `router fit`).

    Args:
        routes_path: routes YAML.
        data_path: labelled JSONL (`{"text", "label"}` per line, label a route or "none").
        target_precision: routed precision to reach.
        out_path: where to write `fitted.yaml` (and `fitted.npz` beside it).
        kind: `semantic` or `baseline`.
        encoder: text encoder; default: the embedded MiniLM.

    Returns:
        What was fitted and how well it is expected to do.

    Raises:
        ConfigError: the routes file is invalid.
        CalibrationDataError: the data file is invalid or does not fit the routes.
    """
    from loramux.embed.encoder import make_encoder
    from loramux.router.fit.baseline import fit_baseline
    from loramux.router.persist import FitInfo, save_router

    if not 0.0 < target_precision <= 1.0:
        raise CalibrationDataError(f"target precision must be in (0, 1], not {target_precision}")
    started = time.perf_counter()
    routes = load_routes(routes_path)
    data = load_labelled(data_path, [spec.name for spec in routes])
    encoder = encoder or make_encoder()
    if kind == "baseline":
        check_labels(data, {spec.name for spec in routes})
        baseline = fit_baseline(routes, data, target_precision, encoder=encoder)
        save_router(baseline, out_path, FitInfo(target_precision))
        thresholds: dict[str, Any] = {"similarity": baseline.threshold}
        estimate = None
    elif kind == "semantic":
        result = fit(routes, data, target_precision, encoder=encoder)
        save_router(result.router, out_path, FitInfo(target_precision, result.estimate.to_dict()))
        t = result.router.thresholds
        thresholds = {
            "probability": t.probability,
            "per-route probability": dict(t.per_route),
            "margin": t.margin,
            "similarity": t.similarity,
            "head weight": t.head_weight,
        }
        estimate = result.estimate
    else:
        raise CalibrationDataError(f"unknown router kind {kind!r}; use semantic or baseline")
    return FitSummary(
        kind,
        out_path,
        len(routes),
        len(data),
        target_precision,
        estimate,
        thresholds,
        time.perf_counter() - started,
    )

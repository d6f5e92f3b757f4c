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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from loramux.config import RouteSpec, load_routes
from loramux.embed.encoder import Encoder
from loramux.errors import CalibrationDataError
from loramux.router.evidence import Scored
from loramux.router.fit.data import LabelledItem, load_labelled
from loramux.router.fit.resample import SplitCheck, check_by_splits, folds_of, out_of_fold
from loramux.router.fit.thresholds import CalibrationEstimate, choose_thresholds
from loramux.router.head import NONE
from loramux.router.semantic import SemanticRouter, Thresholds
from loramux.router.training import TrainingOptions, TrainingSet, build_training

logger = logging.getLogger(__name__)


DECISIONS: dict[str, tuple[float, ...]] = {
    "auto": (0.0, 0.3, 0.5, 0.7, 1.0),
    "blend": (0.3, 0.5, 0.7),
    "head": (1.0,),
    "vote": (0.0,),
}
"""What decides a route (`router fit --decision`), as the blend weights of the head to try:
`vote` the nearest-neighbour vote alone (classic semantic routing), `head` the classifier head
alone (multinomial logistic regression with a "none" class), `blend` the two mixed, `auto`
whichever of them routes the most held-out requests at the asked precision."""


@dataclass(frozen=True)
class FitResult:
    """A fitted semantic router and what calibration expects of it."""

    router: SemanticRouter
    estimate: CalibrationEstimate
    target_precision: float
    check: SplitCheck | None = None
    """The repeated-split check (None when a fixed `precision_slack` was asked for)."""


def fit(
    routes: Sequence[RouteSpec],
    data: Sequence[LabelledItem],
    target_precision: float = 0.95,
    *,
    encoder: Encoder,
    options: TrainingOptions | None = None,
    folds: int = 5,
    repeats: int = 3,
    head_weights: Sequence[float] = DECISIONS["auto"],
    max_oos_sent: float = 0.02,
    precision_slack: float | None = None,
    splits: int = 4,
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
        target_precision: routed precision the router should reach on new data.
        encoder: text encoder.
        options: training-set and head options.
        folds: cross-validation folds (at least 2).
        repeats: cross-validation passes with different splits, pooled (smoother thresholds).
        head_weights: blend weights of head vs neighbour vote to choose from (`DECISIONS`).
        max_oos_sent: most out-of-scope items that may be routed, as a share.
        precision_slack: None (default): how strict the out-of-fold calibration must be, and the
            blend weight, are chosen by the repeated-split check (`resample.check_by_splits`)
            so that held-out precision lands on the target; a number: calibrate to
            `target_precision + precision_slack` instead, and pick the weight out-of-fold.
        splits: A/B splits of the repeated-split check.
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

    def make_router(subset: TrainingSet) -> SemanticRouter:
        return SemanticRouter(encoder, routes, training=subset, options=options, **router_kwargs)

    def choose(scored: Scored, pooled: Sequence[str], target: float) -> Thresholds:
        return choose_thresholds(
            scored,
            pooled,
            target_precision=target,
            max_oos_sent=max_oos_sent,
            per_route=per_route,
            gates=gates,
            forgive=repeats,
        )[0]

    everything = np.arange(len(usable))
    folds_of(labels, folds, seed)  # a clear error before any work when there is too little data
    check = None
    if precision_slack is None:
        check = check_by_splits(
            make_router,
            training,
            labels,
            target_precision,
            head_weights=head_weights,
            choose=choose,
            splits=splits,
            folds=folds,
            repeats=repeats,
            seed=seed,
        )
        head_weights = (check.chosen.head_weight,)
        target = check.chosen.calibration_target
    else:
        target = min(target_precision + precision_slack, 1.0)
    evidence, pooled_labels = out_of_fold(
        make_router, training, everything, labels, folds=folds, repeats=repeats, seed=seed
    )
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
    met = check.met_target if check is not None else estimate.precision >= target_precision
    estimate = replace(
        estimate,
        in_scope=estimate.in_scope // repeats,
        out_of_scope=estimate.out_of_scope // repeats,
        met_target=met,
    )
    if not met:
        logger.warning(
            "router fit: the precision target %.3f is not reached (out-of-fold %.3f); add "
            "exemplars or labelled data",
            target_precision,
            estimate.precision,
        )
    router = SemanticRouter(
        encoder,
        routes,
        training=training,
        options=options,
        thresholds=thresholds,
        **router_kwargs,
    )
    return FitResult(router, estimate, target_precision, check)


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
        check: the repeated-split check (semantic router).
    """

    kind: str
    path: Path
    routes: int
    items: int
    target_precision: float
    estimate: CalibrationEstimate | None
    thresholds: dict[str, Any]
    seconds: float
    check: SplitCheck | None = None

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
            "check": self.check.to_dict() if self.check else None,
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
        if self.check is not None:
            c = self.check.chosen
            rows += [
                (
                    f"held-out precision ({self.check.splits} splits)",
                    f"{c.precision:.3f} (sd {c.precision_sd:.3f})"
                    + ("" if self.check.met_target else "  (below target: add data)"),
                ),
                ("held-out coverage", f"{c.coverage:.3f}"),
                ("held-out OOS sent", f"{c.oos_sent:.3f}"),
                ("decision", _decision_name(c.head_weight)),
                ("out-of-fold calibration target", f"{c.calibration_target:.3f}"),
            ]
        rows += [(key, _fmt(value)) for key, value in self.thresholds.items()]
        rows.append(("fit time", f"{self.seconds:.1f} s"))
        width = max(len(key) for key, _ in rows)
        return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)


def _save(save: Callable[[Path], None], out_path: Path) -> Path:
    """Write a fitted router to `out_path` (a `.yaml` file), or as a new active version when
    `out_path` is a router version store (any other path: a folder). Returns the YAML file."""
    if out_path.suffix in {".yaml", ".yml"}:
        save(out_path)
        return out_path
    from loramux.router.versions import RouterVersions

    store = RouterVersions(out_path)
    version = store.add(save, note="router fit")
    store.activate(version.id, reason="router fit")
    return version.fitted


def _decision_name(weight: float) -> str:
    if weight == 0.0:
        return "vote (nearest-neighbour vote alone)"
    if weight == 1.0:
        return "head (classifier head alone)"
    return f"blend (head weight {weight:g})"


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
    decision: str = "auto",
    encoder: Encoder | None = None,
) -> FitSummary:
    """Fit a router on a routes file and labelled data, and save it (the CLI's `router fit`).

    Args:
        routes_path: routes YAML.
        data_path: labelled JSONL (`{"text", "label"}` per line, label a route or "none").
        target_precision: routed precision to reach.
        out_path: where to write `fitted.yaml` (and `fitted.npz` beside it); a path that is not
            a `.yaml` file is a router version store: the fit is added as a new version there
            and activated (`router/versions.py`).
        kind: `semantic` or `baseline`.
        decision: semantic router: what decides (`DECISIONS`: auto, blend, head, vote).
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
    if decision not in DECISIONS:
        raise CalibrationDataError(
            f"unknown --decision {decision!r}; choose from {', '.join(DECISIONS)}"
        )
    if kind == "baseline" and decision != "auto":
        raise CalibrationDataError("--decision applies to the semantic router, not the baseline")
    started = time.perf_counter()
    routes = load_routes(routes_path)
    data = load_labelled(data_path, [spec.name for spec in routes])
    encoder = encoder or make_encoder()
    if kind == "baseline":
        check_labels(data, {spec.name for spec in routes})
        baseline = fit_baseline(routes, data, target_precision, encoder=encoder)
        out_path = _save(
            lambda path: save_router(baseline, path, FitInfo(target_precision)), out_path
        )
        thresholds: dict[str, Any] = {"similarity": baseline.threshold}
        estimate, check = None, None
    elif kind == "semantic":
        result = fit(
            routes, data, target_precision, encoder=encoder, head_weights=DECISIONS[decision]
        )
        held_out = result.check.to_dict() if result.check else {}
        info = {**result.estimate.to_dict(), "held_out": held_out}
        router = result.router
        out_path = _save(
            lambda path: save_router(router, path, FitInfo(target_precision, info)), out_path
        )
        check = result.check
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
        check,
    )

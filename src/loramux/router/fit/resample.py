"""Out-of-fold evidence, and the repeated-split check that sets how strict calibration must be.

Thresholds chosen on a sample look better on it than on new data, and a head trained on 80% of
the data (each cross-validation fold) is weaker than the final one trained on all of it: a fixed
margin above the target (`precision_slack`) over- or under-delivers by an amount that depends
on the data. `check_by_splits` measures it instead. The labelled data is split, several times,
into a fitting part A (two thirds) and a held-out part B; thresholds are chosen on A's
out-of-fold evidence, exactly as `fit` chooses them on all of the data, for a grid of
*calibration targets* around the asked precision and for each blend weight; and they are scored
on B by a router trained on A alone. The chosen calibration target is the lowest one whose
pooled held-out precision still reaches the asked precision, and the chosen blend weight is the
one that then routes the most held-out in-scope items. So the precision the operator asks for is
what fresh data of the same kind gets, not a margin above it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from loramux.errors import CalibrationDataError
from loramux.router.evidence import Evidence, Scored
from loramux.router.fit.thresholds import passes
from loramux.router.head import NONE
from loramux.router.training import Kind, TrainingSet

MakeRouter = Callable[[TrainingSet], Any]
"""Builds a router (with `.evidence(vectors)`) from a training set."""

TARGET_STEPS = (-0.2, -0.15, -0.12, -0.1, -0.08, *(round(0.005 * k, 3) for k in range(-12, 9)))
"""Calibration targets tried, as offsets from the asked precision (-0.2 ... +0.04)."""


def out_of_fold(
    make_router: MakeRouter,
    training: TrainingSet,
    items: npt.NDArray[np.int64],
    labels: Sequence[str],
    *,
    folds: int,
    repeats: int,
    seed: int,
    exclude: npt.NDArray[np.int64] | None = None,
) -> tuple[Evidence, list[str]]:
    """Evidence of each of `items` from routers that did not see it, `repeats` passes pooled.

    Args:
        make_router: builds a router from a training set.
        training: the whole training set (its labelled rows are the labelled items in order).
        items: positions (in the labelled data) of the items to score.
        labels: label of every labelled item.
        folds: cross-validation folds.
        repeats: passes with different fold assignments.
        seed: fold assignment seed.
        exclude: labelled items left out of every router (a held-out split).

    Returns:
        Evidence (rows: `items` once per pass) and the matching labels.
    """
    labelled_ids = training.ids[training.kinds == Kind.LABELLED]
    vectors = training.vectors[training.kinds == Kind.LABELLED]
    held_out = labelled_ids[exclude] if exclude is not None else labelled_ids[:0]
    item_labels = [labels[i] for i in items]
    parts: list[Evidence] = []
    for rep in range(repeats):
        fold_of = folds_of(item_labels, folds, seed + rep)
        fold_parts: list[Evidence] = []
        order: list[npt.NDArray[np.int64]] = []
        for fold in range(folds):
            held = items[fold_of == fold]
            if not len(held):
                continue
            keep = ~np.isin(training.ids, np.concatenate([labelled_ids[held], held_out]))
            fold_parts.append(make_router(training.select(keep)).evidence(vectors[held]))
            order.append(np.flatnonzero(fold_of == fold))
        stacked = Evidence.concat(fold_parts)
        position = np.empty(len(items), np.int64)
        position[np.concatenate(order)] = np.arange(len(items))
        parts.append(stacked.take(position))
    return Evidence.concat(parts), item_labels * repeats


def folds_of(labels: Sequence[str], folds: int, seed: int) -> npt.NDArray[np.int64]:
    """Stratified fold number per item.

    Raises:
        CalibrationDataError: fewer than 2 folds, or fewer items than folds.
    """
    if folds < 2:
        raise CalibrationDataError("cross-validation needs at least 2 folds")
    if len(labels) < folds:
        raise CalibrationDataError(
            f"{len(labels)} labelled items are too few for {folds}-fold calibration; "
            "label at least a few dozen requests"
        )
    rng = np.random.default_rng(seed)
    out = np.zeros(len(labels), np.int64)
    lab = np.array(labels)
    for label in sorted(set(labels)):
        idx = np.flatnonzero(lab == label)
        rng.shuffle(idx)
        out[idx] = (np.arange(len(idx)) + rng.integers(folds)) % folds
    return out


@dataclass(frozen=True)
class Candidate:
    """Pooled held-out quality of one (blend weight, calibration target) over the splits."""

    head_weight: float
    calibration_target: float
    precision: float
    coverage: float
    oos_sent: float
    split_precisions: tuple[float, ...]

    @property
    def precision_sd(self) -> float:
        """Spread of precision between the splits."""
        return float(np.std(self.split_precisions)) if self.split_precisions else 0.0


@dataclass(frozen=True)
class SplitCheck:
    """What the repeated-split check chose and what it expects on fresh data.

    Attributes:
        chosen: the chosen candidate (its held-out precision is the expected one).
        splits: number of A/B splits.
        candidates: every candidate measured, for reports.
        met_target: whether some candidate reached the asked precision on held-out items.
    """

    chosen: Candidate
    splits: int
    candidates: tuple[Candidate, ...]
    met_target: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON/YAML-ready mapping (the chosen point; candidates are left out)."""
        c = self.chosen
        return {
            "splits": self.splits,
            "head_weight": c.head_weight,
            "calibration_target": round(c.calibration_target, 4),
            "held_out_precision": round(c.precision, 4),
            "held_out_precision_sd": round(c.precision_sd, 4),
            "held_out_coverage": round(c.coverage, 4),
            "held_out_oos_sent": round(c.oos_sent, 4),
            "met_target": self.met_target,
        }


def check_by_splits(
    make_router: MakeRouter,
    training: TrainingSet,
    labels: Sequence[str],
    target_precision: float,
    *,
    head_weights: Sequence[float],
    choose: Callable[[Scored, Sequence[str], float], Any],
    splits: int = 4,
    holdout: float = 1 / 3,
    folds: int = 5,
    repeats: int = 3,
    seed: int = 0,
) -> SplitCheck:
    """Choose the calibration target and blend weight that hit `target_precision` held out.

    Args:
        make_router: builds a router from a training set.
        training: the whole training set.
        labels: label of every labelled item.
        target_precision: the routed precision asked for.
        head_weights: blend weights to compare (0: neighbour vote only, 1: head only).
        choose: `(scored, labels, calibration_target) -> Thresholds`, as `fit` chooses them.
        splits: A/B splits.
        holdout: share of each label's items in B.
        folds: cross-validation folds inside A.
        repeats: cross-validation passes inside A.
        seed: split and fold seed.

    Returns:
        The choice, with every candidate's pooled held-out quality.
    """
    lab = np.array(labels)
    vectors = training.vectors[training.kinds == Kind.LABELLED]
    tallies: dict[tuple[float, float], list[tuple[int, int, int, int, int]]] = {}
    for split in range(splits):
        rng = np.random.default_rng(seed + 1000 + split)
        in_b = np.zeros(len(lab), bool)
        for label in sorted(set(labels)):
            idx = np.flatnonzero(lab == label)
            rng.shuffle(idx)
            in_b[idx[: int(round(len(idx) * holdout))]] = True
        a, b = np.flatnonzero(~in_b), np.flatnonzero(in_b)
        if not len(b) or not len(a):
            continue
        oof, oof_labels = out_of_fold(
            make_router, training, a, labels, folds=folds, repeats=repeats, seed=seed, exclude=b
        )
        keep = ~np.isin(training.ids, training.ids[training.kinds == Kind.LABELLED][b])
        held = make_router(training.select(keep)).evidence(vectors[b])
        b_labels = lab[b]
        for weight in head_weights:
            scored_a, scored_b = oof.combine(weight), held.combine(weight)
            for step in TARGET_STEPS:
                target = min(target_precision + step, 1.0)
                thresholds = choose(scored_a, oof_labels, target)
                routed = passes(thresholds, scored_b)
                best = np.array([x or "" for x in scored_b.best])
                right = routed & (best == b_labels)
                tallies.setdefault((weight, target), []).append(
                    (
                        int(routed.sum()),
                        int(right.sum()),
                        int((routed & (b_labels != NONE)).sum()),
                        int((b_labels != NONE).sum()),
                        int((routed & (b_labels == NONE)).sum()),
                    )
                )
    n_oos = max(int((lab == NONE).sum() * holdout), 1)
    candidates = tuple(
        _candidate(weight, target, rows, n_oos) for (weight, target), rows in tallies.items()
    )
    return _choose(candidates, target_precision, splits)


def _candidate(
    weight: float, target: float, rows: list[tuple[int, int, int, int, int]], n_oos: int
) -> Candidate:
    routed, right, routed_in, n_in, routed_oos = (sum(col) for col in zip(*rows, strict=True))
    return Candidate(
        head_weight=weight,
        calibration_target=target,
        precision=right / routed if routed else 1.0,
        coverage=routed_in / n_in if n_in else 0.0,
        oos_sent=routed_oos / (n_oos * len(rows)),
        split_precisions=tuple(r[1] / r[0] if r[0] else 1.0 for r in rows),
    )


def _choose(candidates: Sequence[Candidate], target: float, splits: int) -> SplitCheck:
    """Per weight the lowest calibration target from which held-out precision stays on target;
    then the weight with the most held-out coverage there (ties: the blend nearest 0.5)."""
    best: Candidate | None = None
    for weight in sorted({c.head_weight for c in candidates}):
        ladder = sorted(
            (c for c in candidates if c.head_weight == weight),
            key=lambda c: -c.calibration_target,
        )
        pick = None
        for c in ladder:  # from the strictest down, while precision holds
            if c.precision < target:
                break
            pick = c
        if pick is None:
            continue
        key = (round(pick.coverage, 3), -abs(weight - 0.5))
        if best is None or key > (round(best.coverage, 3), -abs(best.head_weight - 0.5)):
            best = pick
    if best is not None:
        return SplitCheck(best, splits, tuple(candidates), True)
    strictest = max(candidates, key=lambda c: (c.calibration_target, c.precision))
    return SplitCheck(strictest, splits, tuple(candidates), False)

"""Learning from traffic: logged decisions + approved feedback become labelled data for a refit.

A decision-log record (`gateway/decisions.py`) of a `model="auto"` request becomes a labelled
item when the log holds its text (`dashboard.show_texts`) and either
  - an approved correction names its right route (or `none`): a corrections JSONL file with
    `{"request_id", "label", "approved": true}` per line, written when someone reviews
    feedback (unapproved lines are counted and left out), or
  - it was routed to an adapter and rated thumbs up: its route is confirmed.
Anything else (abstained and unrated, thumbs down without a correction) has no label and is
left out. A share of the labelled items (by a hash of the request id, so the same items every
run) is held out: the refit never sees it, and both the router being served ("before") and the
refitted one ("after") are measured on it. The refit writes a new version into the router
version store (`router/versions.py`), which a running gateway swaps in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loramux.errors import CalibrationDataError
from loramux.router.fit.data import LabelledItem


@dataclass(frozen=True)
class LogData:
    """Labelled items drawn from the log, and what was left out.

    Attributes:
        items: the labelled items (kind `corrected` or `confirmed`).
        request_ids: the request id of each item.
        corrected: items labelled by an approved correction.
        confirmed: routed items rated thumbs up.
        no_text: `auto` records without their text (`dashboard.show_texts` off).
        unlabelled: `auto` records with text but no correction and no thumbs up.
        unapproved: corrections not approved.
    """

    items: list[LabelledItem] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)
    corrected: int = 0
    confirmed: int = 0
    no_text: int = 0
    unlabelled: int = 0
    unapproved: int = 0

    def to_dict(self) -> dict[str, int]:
        """The counts."""
        return {
            "labelled": len(self.items),
            "corrected": self.corrected,
            "confirmed": self.confirmed,
            "no_text": self.no_text,
            "unlabelled": self.unlabelled,
            "unapproved_corrections": self.unapproved,
        }


def load_corrections(path: Path) -> tuple[dict[str, str], int]:
    """Approved corrections by request id, and the number of unapproved ones.

    Raises:
        CalibrationDataError: a line is not a JSON object with `request_id` and `label`.
    """
    approved: dict[str, str] = {}
    unapproved = 0
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CalibrationDataError(f"cannot read corrections {path}: {exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise CalibrationDataError(f"{path}:{number}: not JSON ({exc})") from exc
        if not isinstance(row, dict) or not {"request_id", "label"} <= set(row):
            raise CalibrationDataError(
                f'{path}:{number}: a correction needs "request_id" and "label" (a route or '
                '"none"), and "approved": true to be used'
            )
        if row.get("approved") is True:
            approved[str(row["request_id"])] = str(row["label"])
        else:
            unapproved += 1
    return approved, unapproved


def labelled_from_log(
    records: Iterable[Mapping[str, Any]],
    ratings: Mapping[str, str],
    corrections: Mapping[str, str],
    unapproved: int = 0,
) -> LogData:
    """Labelled items from decision-log records (see the module docstring).

    Args:
        records: decision-log records, oldest first (a later record of a request id wins).
        ratings: request id -> "up" | "down" (the registry's feedback).
        corrections: request id -> right label, approved corrections only.
        unapproved: unapproved corrections, for the counts.
    """
    latest: dict[str, Mapping[str, Any]] = {}
    for record in records:
        if record.get("routed") and record.get("request_id"):
            latest[str(record["request_id"])] = record
    out = LogData(unapproved=unapproved)
    counts = {"corrected": 0, "confirmed": 0, "no_text": 0, "unlabelled": 0}
    for rid, record in latest.items():
        text = record.get("text")
        if not isinstance(text, str) or not text.strip():
            counts["no_text"] += 1
            continue
        if rid in corrections:
            out.items.append(LabelledItem(text, corrections[rid], "corrected"))
            counts["corrected"] += 1
        elif ratings.get(rid) == "up" and record.get("target") == "adapter" and record.get("route"):
            out.items.append(LabelledItem(text, str(record["route"]), "confirmed"))
            counts["confirmed"] += 1
        else:
            counts["unlabelled"] += 1
            continue
        out.request_ids.append(rid)
    return LogData(out.items, out.request_ids, unapproved=unapproved, **counts)


def split_held_out(log: LogData, share: float) -> tuple[list[LabelledItem], list[LabelledItem]]:
    """(items to fit on, held-out items): each request id falls on the same side every run."""
    if not 0.0 < share < 1.0:
        raise CalibrationDataError(f"--held-out must be between 0 and 1, not {share}")
    fit_items: list[LabelledItem] = []
    held: list[LabelledItem] = []
    for item, rid in zip(log.items, log.request_ids, strict=True):
        h = int(hashlib.sha256(rid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (held if h < share else fit_items).append(item)
    return fit_items, held


def check_enough(log: LogData, held: Sequence[LabelledItem]) -> None:
    """Refuse a refit without labelled traffic, naming what is missing.

    Raises:
        CalibrationDataError: no labelled items, or none held out.
    """
    if not log.items:
        why = []
        if log.no_text:
            why.append(
                f"{log.no_text} routed requests were logged without their text (turn on "
                "`dashboard.show_texts` to keep it)"
            )
        if log.unlabelled:
            why.append(f"{log.unlabelled} have no approved correction and no thumbs up")
        raise CalibrationDataError(
            "the decision log gives no labelled request"
            + (": " + "; ".join(why) if why else " (no `model: auto` request was logged)")
        )
    if not held:
        raise CalibrationDataError(
            f"none of the {len(log.items)} labelled requests fell in the held-out share; "
            "raise --held-out or label more traffic"
        )


@dataclass(frozen=True)
class RefitSummary:
    """What `refit_router` did: the log's counts, before/after on held-out items, the version."""

    log: LogData
    fit_items: int
    held_out: int
    before: Any
    """`RouterReport` of the served router on the held-out items."""
    after: Any
    """`RouterReport` of the refitted router on the same items."""
    version: str
    activated: bool
    files: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "log": self.log.to_dict(),
            "fit_items": self.fit_items,
            "held_out": self.held_out,
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "version": self.version,
            "activated": self.activated,
            "files": self.files,
        }

    def format_table(self) -> str:
        """Counts, the before/after table and both curves."""
        from loramux.router.fit.curve import format_curve

        counts = ", ".join(f"{k} {v}" for k, v in self.log.to_dict().items())
        lines = [
            f"decision log: {counts}",
            f"refit on {self.fit_items} logged items (+ --data), measured on {self.held_out} "
            "held-out logged items",
            "",
            f"{'':<8} {'precision':>9} {'coverage':>8} {'OOS sent':>8}",
        ]
        for name, r in (("before", self.before), ("after", self.after)):
            lines.append(
                f"{name:<8} {r.routed_precision:>9.3f} {r.coverage:>8.3f} {r.oos_sent:>8.3f}"
            )
        for name, r in (("before", self.before), ("after", self.after)):
            if r.curve:
                lines += ["", f"{name}: precision-coverage curve on the held-out items"]
                lines.append(format_curve(r.curve, (r.routed_precision, r.coverage, r.oos_sent)))
        state = (
            "activated (a gateway serving the store swaps it in)"
            if self.activated
            else ("stored, not activated (`loramux router rollback --to ID` activates it)")
        )
        lines += ["", f"new version {self.version}: {state}"]
        lines += [f"{name}: {path}" for name, path in self.files.items()]
        return "\n".join(lines)


def refit_router(
    current: Any,
    log: LogData,
    store: Path,
    *,
    encoder: Any,
    base_data: Sequence[LabelledItem] = (),
    target_precision: float = 0.95,
    decision: str = "auto",
    held_out: float = 0.3,
    activate: bool = True,
    out_dir: Path | None = None,
) -> RefitSummary:
    """Refit the served router on logged labelled traffic (+ `base_data`) and store a version.

    Args:
        current: the router being served (its routes are kept; it is the "before").
        log: labelled items from the log (`labelled_from_log`).
        store: the router version store folder.
        encoder: text encoder.
        base_data: labelled data the router was fitted on before (kept in the refit).
        target_precision: routed precision to reach.
        decision: `DECISIONS` key.
        held_out: share of the logged items held out for the before/after measurement.
        activate: make the new version the active one.
        out_dir: where to write `before_after.png` and `refit.json`.

    Returns:
        The summary.

    Raises:
        CalibrationDataError: no labelled traffic, or labels that name no route.
    """
    from loramux.fileio import atomic_write_text
    from loramux.router.fit.calibration import DECISIONS, check_labels, fit
    from loramux.router.fit.evaluation import evaluate
    from loramux.router.fit.plots import before_after_png
    from loramux.router.persist import FitInfo, save_router
    from loramux.router.versions import RouterVersions

    if decision not in DECISIONS:
        raise CalibrationDataError(
            f"unknown --decision {decision!r}; choose from {', '.join(DECISIONS)}"
        )
    fit_items, held = split_held_out(log, held_out)
    check_enough(log, held)
    routes = list(current.routes.values())
    names = {spec.name for spec in routes}
    check_labels([*log.items, *base_data], names)
    before = evaluate(current, held)
    result = fit(
        routes,
        [*base_data, *fit_items],
        target_precision,
        encoder=encoder,
        head_weights=DECISIONS[decision],
    )
    after = evaluate(result.router, held)
    info = {
        **result.estimate.to_dict(),
        "held_out": result.check.to_dict() if result.check else {},
        "from_log": {**log.to_dict(), "fit_items": len(fit_items), "held_out_items": len(held)},
    }
    versions = RouterVersions(store)
    version = versions.add(
        lambda path: save_router(result.router, path, FitInfo(target_precision, info)),
        note=f"refit from the decision log: {len(fit_items)} logged items",
    )
    if activate:
        versions.activate(version.id, reason="refit from log")
    files: dict[str, str] = {}
    summary = RefitSummary(
        log, len(fit_items), len(held), before, after, version.id, activate, files
    )
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        png = out_dir / "before_after.png"
        if before_after_png(before.curve, after.curve, before, after, png):
            files["before/after curve"] = str(png)
        files["report"] = str(out_dir / "refit.json")
        atomic_write_text(out_dir / "refit.json", json.dumps(summary.to_dict(), indent=2) + "\n")
    return summary

"""PNG charts of a router evaluation: the confusion matrix and the precision-coverage curve.

matplotlib is imported here only, lazily, with the non-interactive Agg backend; without it the
charts are skipped (the report says so) and everything else still works.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loramux.plotting import label_cells, pyplot, save


def _pyplot() -> Any:
    return pyplot("router evaluate")


def _coverage_axes(ax: Any, lowest: float) -> None:
    """Labels, limits and grid of a precision-coverage chart whose lowest precision is `lowest`."""
    ax.set_xlabel("coverage (share of in-scope requests routed)")
    ax.set_ylabel("routed precision (out-of-scope routed = wrong)")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(lowest - 0.02, 1.01)
    ax.grid(alpha=0.3)


def confusion_png(
    matrix: Sequence[Sequence[int]], rows: Sequence[str], cols: Sequence[str], path: Path
) -> bool:
    """Draw a confusion matrix (rows: labels, columns: predictions) to `path`.

    Returns:
        Whether the file was written.
    """
    plt = _pyplot()
    if plt is None:
        return False
    size = 1.2 + 0.6 * max(len(rows), len(cols))
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("routed to")
    ax.set_ylabel("label")
    peak = max((max(row) for row in matrix), default=0)
    label_cells(ax, matrix, str, lambda value: value > peak / 2)
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_title("Router confusion matrix")
    return save(plt, fig, path)


def precision_coverage_png(curve: Sequence[Any], point: tuple[float, float], path: Path) -> bool:
    """Draw routed precision against coverage as the threshold falls, the router's point marked.

    Args:
        curve: `CurvePoint`s (threshold, precision, coverage, ...), strictest first.
        point: (coverage, routed precision) the router reaches with its own thresholds.
        path: PNG file.

    Returns:
        Whether the file was written.
    """
    plt = _pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    xs, ys = [p.coverage for p in curve], [p.precision for p in curve]
    ax.plot(xs, ys, label="probability threshold sweep")
    step = max(len(curve) // 8, 1)
    for p in list(curve)[step // 2 :: step]:
        ax.annotate(f"{p.threshold:.2f}", (p.coverage, p.precision), fontsize=7, alpha=0.7)
    ax.scatter([point[0]], [point[1]], color="C3", zorder=3, s=40, label="fitted thresholds")
    ax.annotate(
        f"fitted: {point[1]:.3f} @ {point[0]:.3f}",
        point,
        textcoords="offset points",
        xytext=(-10, -16),
        ha="right",
        color="C3",
        fontsize=8,
    )
    _coverage_axes(ax, min([*ys, point[1], 0.5]))
    ax.legend(loc="lower left")
    ax.set_title("Precision vs coverage (labels: threshold)")
    return save(plt, fig, path)


def before_after_png(
    before: Sequence[Any], after: Sequence[Any], before_report: Any, after_report: Any, path: Path
) -> bool:
    """Precision-coverage curves of the served and the refitted router on the same held-out
    items, each with its own thresholds' point.

    Returns:
        Whether the file was written.
    """
    plt = _pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    low = 0.5
    for name, curve, report, color in (
        ("before", before, before_report, "C0"),
        ("after", after, after_report, "C1"),
    ):
        ys = [p.precision for p in curve]
        if curve:
            ax.plot([p.coverage for p in curve], ys, color=color, label=f"{name}: sweep")
        ax.scatter(
            [report.coverage],
            [report.routed_precision],
            color=color,
            zorder=3,
            s=40,
            label=f"{name}: fitted {report.routed_precision:.3f} @ {report.coverage:.3f}",
        )
        low = min([*ys, report.routed_precision, low])
    _coverage_axes(ax, low)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("Refit from the decision log: held-out items")
    return save(plt, fig, path)

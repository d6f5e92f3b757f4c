"""PNG charts of `loramux eval`: task scores, forgetting per benchmark, the misroute heat map.

matplotlib is imported here only, lazily, with the non-interactive Agg backend; without it the
charts are skipped (the report says so) and the JSON is still written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loramux.plotting import label_cells, pyplot, save


def _pyplot() -> Any:
    return pyplot("loramux eval")


def task_png(
    labels: Sequence[str],
    base: Sequence[float],
    tuned: Sequence[float],
    intervals: Sequence[tuple[float, float]],
    metric: str,
    path: Path,
) -> bool:
    """Base vs adapter per task, the adapter's bar with its interval (as base + difference).

    Returns:
        Whether the file was written.
    """
    plt = _pyplot()
    if plt is None:
        return False
    x = list(range(len(labels)))
    fig, ax = plt.subplots(figsize=(max(5.5, 1.8 + 1.6 * len(labels)), 4.2))
    ax.bar([i - 0.2 for i in x], base, width=0.4, label="base model", color="0.65")
    errors = [
        [t - (b + lo) for t, b, (lo, _) in zip(tuned, base, intervals, strict=True)],
        [(b + hi) - t for t, b, (_, hi) in zip(tuned, base, intervals, strict=True)],
    ]
    ax.bar([i + 0.2 for i in x], tuned, width=0.4, label="adapter", color="C0")
    ax.errorbar([i + 0.2 for i in x], tuned, yerr=errors, fmt="none", ecolor="k", capsize=4)
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(metric)
    ax.legend(loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(
        "Held-out task data: base model vs adapter\n(error bar: 95% CI of adapter - base)",
        fontsize=10,
    )
    return save(plt, fig, path)


def forgetting_png(
    columns: Sequence[str],
    accuracy: Mapping[str, Sequence[float]],
    diffs: Mapping[str, Sequence[tuple[float, float, float]]],
    tolerance: float,
    path: Path,
) -> bool:
    """Left: accuracy per benchmark and model. Right: adapter - base in points with intervals.

    Args:
        columns: benchmark names (plus "average").
        accuracy: model -> accuracy (percent) per column.
        diffs: adapter -> (difference, low, high) per column, in points.
        tolerance: drawn as a dashed line at -tolerance.
        path: PNG file.

    Returns:
        Whether the file was written.
    """
    plt = _pyplot()
    if plt is None:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(6 + 1.4 * len(columns), 4.4))
    models = list(accuracy)
    width = 0.8 / max(len(models), 1)
    for k, model in enumerate(models):
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(columns))]
        color = "0.65" if k == 0 else f"C{k - 1}"  # base grey; adapters as in the right panel
        left.bar(xs, accuracy[model], width=width, label=model, color=color)
    left.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    left.set_ylabel("accuracy (%)")
    left.set_ylim(0, 100)
    left.grid(axis="y", alpha=0.3)
    left.legend(fontsize=8)
    left.set_title("Accuracy (same items for every model)")
    adapters = list(diffs)
    width = 0.8 / max(len(adapters), 1)
    for k, adapter in enumerate(adapters):
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(columns))]
        mid = [d for d, _, _ in diffs[adapter]]
        err = [[d - lo for d, lo, _ in diffs[adapter]], [hi - d for d, _, hi in diffs[adapter]]]
        right.errorbar(xs, mid, yerr=err, fmt="o", capsize=4, label=adapter, color=f"C{k}")
    right.axhline(0, color="k", linewidth=0.8)
    right.axhline(
        -tolerance, color="k", linestyle="--", linewidth=0.8, label=f"-{tolerance:g} (tolerance)"
    )
    right.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    right.set_ylabel("adapter - base (points)")
    right.grid(axis="y", alpha=0.3)
    right.legend(fontsize=8)
    right.set_title("Difference with 95% paired bootstrap CI")
    return save(plt, fig, path)


def matrix_png(
    matrix: Sequence[Sequence[float]],
    rows: Sequence[str],
    cols: Sequence[str],
    metric: str,
    path: Path,
) -> bool:
    """Heat map of the metric, rows = models (base first), columns = tasks.

    Returns:
        Whether the file was written.
    """
    plt = _pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(max(5.0, 2.4 + 1.3 * len(cols)), 1.8 + 0.7 * len(rows)))
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("task data (held-out questions of)")
    ax.set_ylabel("answered by")
    label_cells(ax, matrix, lambda value: f"{value:.2f}", lambda value: value <= 0.6)
    fig.colorbar(image, ax=ax, fraction=0.046, label=metric)
    ax.set_title(f"Misroute matrix ({metric})")
    return save(plt, fig, path)

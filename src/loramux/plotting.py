"""matplotlib, imported lazily with the non-interactive Agg backend, for the PNG charts of
`loramux router eval` and `loramux eval`; without matplotlib the charts are skipped."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def pyplot(command: str) -> Any:
    """`matplotlib.pyplot` on the Agg backend, or None (with a warning naming `command`)."""
    try:
        import matplotlib
    except ImportError:
        logger.warning("%s: matplotlib is not installed; skipping the PNG charts", command)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def label_cells(
    ax: Any,
    matrix: Sequence[Sequence[float]],
    text: Callable[[float], str],
    on_dark: Callable[[float], bool],
) -> None:
    """Write each value of a heat map in its cell, white where the cell's colour is dark."""
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            color = "white" if on_dark(value) else "black"
            ax.text(j, i, text(value), ha="center", va="center", color=color)


def save(plt: Any, fig: Any, path: Path) -> bool:
    """Lay out `fig`, write it to `path` (120 dpi) and close it.

    Returns:
        True: the file was written (what the chart functions return).
    """
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True

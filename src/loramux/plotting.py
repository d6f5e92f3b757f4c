"""matplotlib, imported lazily with the non-interactive Agg backend, for the PNG charts of
`loramux router eval` and `loramux eval`; without matplotlib the charts are skipped."""

from __future__ import annotations

import logging
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

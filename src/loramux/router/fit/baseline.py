"""Fitting the baseline router: the lowest global threshold that reaches the asked precision."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from loramux.config import RouteSpec
from loramux.embed.encoder import Encoder
from loramux.router.baseline import BaselineRouter
from loramux.router.fit.data import LabelledItem


def fit_baseline(
    routes: Sequence[RouteSpec],
    data: Sequence[LabelledItem],
    target_precision: float = 0.95,
    *,
    encoder: Encoder,
    **router_kwargs: Any,
) -> BaselineRouter:
    """A baseline router whose threshold is the lowest one reaching `target_precision` on `data`.

    Nothing is trained, so the threshold is chosen on `data` directly. When no threshold reaches
    the target, the one with the best precision is used.

    Args:
        routes: the routes.
        data: labelled items (items with history are left out).
        target_precision: routed precision to reach.
        encoder: text encoder.
        **router_kwargs: passed to `BaselineRouter`.

    Returns:
        The router with its fitted threshold.
    """
    router = BaselineRouter(encoder, routes, **router_kwargs)
    usable = [item for item in data if not item.history]
    scored = router.score(encoder.encode([item.text for item in usable]))
    labels = np.array([item.label for item in usable])
    best = np.array([b or "" for b in scored.best])
    order = np.argsort(-scored.probability, kind="stable")
    correct = (best == labels)[order]
    precision = np.cumsum(correct) / np.arange(1, len(order) + 1)
    ok = np.flatnonzero(precision >= target_precision)
    k = int(ok[-1]) if len(ok) else int(np.argmax(precision))
    router.threshold = float(scored.probability[order[k]]) if len(order) else 1.0
    return router

"""Routing decisions as values: where a request goes, and why.

A `RouteDecision` is what the router returns, what the API puts in `x-loramux-*` headers and
`POST /v1/route`, and what the decision log records. It never holds a magic adapter name: a request
that goes to the base model has `target=BASE` and `adapter=None`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class RouteTarget(enum.Enum):
    """What serves the request."""

    ADAPTER = "adapter"
    """A LoRA adapter (named in `RouteDecision.adapter`)."""
    BASE = "base"
    """The base model, without an adapter."""
    RAG = "rag"
    """The base model, with knowledge-base passages in the prompt."""


@dataclass(frozen=True)
class RouteDecision:
    """The router's answer for one request.

    Attributes:
        target: adapter, base model, or RAG.
        route: the route chosen, or None when the router abstained.
        adapter: the adapter to use (only when `target` is ADAPTER).
        score: the router's confidence in its best route (for the semantic router a calibrated
            probability; for the baseline a cosine similarity), also when it abstained.
        margin: how far the best route is ahead of the next class (another route or "none").
        alternatives: (route, score) of the best routes, best first, the chosen one included.
        reason: one line saying why, for logs and the `/v1/route` answer.
    """

    target: RouteTarget
    route: str | None
    adapter: str | None
    score: float
    margin: float
    alternatives: tuple[tuple[str, float], ...]
    reason: str

    @property
    def abstained(self) -> bool:
        """True when no route was confident enough (the request went to RAG or the base model)."""
        return self.route is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (scores rounded to 4 decimals)."""
        return {
            "target": self.target.value,
            "route": self.route,
            "adapter": self.adapter,
            "score": round(self.score, 4),
            "margin": round(self.margin, 4),
            "abstained": self.abstained,
            "alternatives": [
                {"route": route, "score": round(score, 4)} for route, score in self.alternatives
            ],
            "reason": self.reason,
        }

"""The `Router` seam and what every router shares: the route table and the abstention fallback.

A router maps a request (its last user turn, optionally the earlier user turns) to a
`RouteDecision`. When it is not confident it abstains, and `abstain()` decides between a RAG answer
(the knowledge base has a close passage) and the base model: never a guessed adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from loramux.config import RouteSpec
from loramux.router.decision import RouteDecision, RouteTarget

KbProbe = Callable[[str], float]
"""Returns the knowledge base's best passage score for a text."""


class Router(Protocol):
    """Chooses a route for each request."""

    @property
    def routes(self) -> dict[str, RouteSpec]:
        """The routes it can choose from, by name."""
        ...

    def route(
        self, text: str, *, history: Sequence[str] = (), allowed: Iterable[str] | None = None
    ) -> RouteDecision:
        """Decide for one request.

        Args:
            text: the last user turn.
            history: earlier user turns of the conversation, oldest first.
            allowed: routes the caller may use (None: all); others are treated as absent.
        """
        ...

    def route_batch(
        self,
        texts: Sequence[str],
        *,
        histories: Sequence[Sequence[str]] | None = None,
        allowed: Iterable[str] | None = None,
    ) -> list[RouteDecision]:
        """Decide for many requests at once (one encoder pass)."""
        ...

    def add_routes(self, specs: Sequence[RouteSpec]) -> None:
        """Add (or replace) routes while serving, all at once (one retrain for many: start-up
        with a thousand adapters that each bring their utterances)."""
        ...

    def remove_route(self, name: str) -> None:
        """Remove a route while serving (unknown names are ignored)."""
        ...


def routed(
    spec: RouteSpec, score: float, margin: float, alts: tuple[tuple[str, float], ...], reason: str
) -> RouteDecision:
    """The decision that sends a request along `spec`."""
    target_name = spec.target or spec.name
    target = {"base": RouteTarget.BASE, "rag": RouteTarget.RAG}.get(
        target_name, RouteTarget.ADAPTER
    )
    return RouteDecision(target, spec.name, spec.adapter, score, margin, alts, reason)


def abstain(
    text: str,
    score: float,
    margin: float,
    alts: tuple[tuple[str, float], ...],
    reason: str,
    *,
    kb_probe: KbProbe | None,
    rag_min_score: float,
) -> RouteDecision:
    """The decision for a request no route is confident about: RAG if a passage is close, else base.

    Args:
        text: the text to probe the knowledge base with.
        score: the best route's score (kept for logs).
        margin: the best route's margin.
        alts: best routes with scores.
        reason: why the router abstained.
        kb_probe: the knowledge base's best-passage score function, if there is a knowledge base.
        rag_min_score: passage score from which the request gets a RAG answer.
    """
    if kb_probe is not None:
        best = kb_probe(text)
        if best >= rag_min_score:
            why = f"{reason}; knowledge base passage scores {best:.2f} >= {rag_min_score:.2f}"
            return RouteDecision(RouteTarget.RAG, None, None, score, margin, alts, why)
        reason = f"{reason}; best knowledge base passage {best:.2f} < {rag_min_score:.2f}"
    return RouteDecision(RouteTarget.BASE, None, None, score, margin, alts, reason)


def allowed_set(routes: Iterable[str], allowed: Iterable[str] | None) -> frozenset[str]:
    """The route names a request may use."""
    names = frozenset(routes)
    return names if allowed is None else names & frozenset(allowed)

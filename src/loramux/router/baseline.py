"""The baseline router: the route of the most similar exemplar, above one global threshold.

This is the plain "semantic router" most systems start with, kept for comparison (`loramux router
evaluate`, `bench/bench_router.py`). It has no out-of-scope class and no notion of a follow-up; its
single threshold can be fitted to a precision target with `router.fit.baseline.fit_baseline`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from loramux.config import RouteSpec
from loramux.embed.encoder import Encoder
from loramux.embed.index import FaissIndex
from loramux.router.base import KbProbe, abstain, routed
from loramux.router.decision import RouteDecision
from loramux.router.evidence import Evidence, Scored, neighbour_vote


class BaselineRouter:
    """Max cosine similarity to the exemplars, one global threshold.

    Args:
        encoder: text encoder.
        routes: the routes.
        threshold: least similarity of the nearest exemplar.
        vectors: exemplar vectors per route (skips encoding), in the order of `utterances`.
        kb_probe: best knowledge-base passage score for a text, or None.
        rag_min_score: passage score from which an abstained request gets a RAG answer.
        neighbours: nearest exemplars looked up per request.
    """

    CONFIG_FIELDS = ("neighbours", "exact_search_max")
    """The `router:` keys an unfitted router of this kind is built with (`router.build`)."""

    def __init__(
        self,
        encoder: Encoder,
        routes: Sequence[RouteSpec],
        *,
        threshold: float = 0.5,
        vectors: Mapping[str, npt.NDArray[np.float32]] | None = None,
        kb_probe: KbProbe | None = None,
        rag_min_score: float = 0.4,
        neighbours: int = 16,
        exact_search_max: int = 50_000,
    ) -> None:
        self.encoder = encoder
        self.threshold = threshold
        self.kb_probe = kb_probe
        self.rag_min_score = rag_min_score
        self.neighbours = neighbours
        self._exact_max = exact_search_max
        self._lock = threading.Lock()
        self._routes: dict[str, RouteSpec] = {}
        self._vectors: dict[str, npt.NDArray[np.float32]] = {}
        self._index = FaissIndex(encoder.dim, exact_max=exact_search_max)
        self._route_of: list[str] = []
        for spec in routes:
            given = None if vectors is None else vectors.get(spec.name)
            self._vectors[spec.name] = encoder.encode(spec.utterances) if given is None else given
            self._routes[spec.name] = spec
        self._reindex()

    @property
    def routes(self) -> dict[str, RouteSpec]:
        """The routes, by name."""
        return dict(self._routes)

    @property
    def exemplar_vectors(self) -> dict[str, npt.NDArray[np.float32]]:
        """Exemplar vectors per route."""
        return dict(self._vectors)

    def add_routes(self, specs: Sequence[RouteSpec]) -> None:
        """Add or replace routes (encodes their exemplars, reindexes once)."""
        vectors = self.encoder.encode([u for spec in specs for u in spec.utterances])
        with self._lock:
            start = 0
            for spec in specs:
                self._routes[spec.name] = spec
                self._vectors[spec.name] = vectors[start : start + len(spec.utterances)]
                start += len(spec.utterances)
            self._reindex()

    def remove_route(self, name: str) -> None:
        """Remove a route (unknown names are ignored)."""
        with self._lock:
            if self._routes.pop(name, None) is not None:
                del self._vectors[name]
                self._reindex()

    def _reindex(self) -> None:
        index = FaissIndex(self.encoder.dim, exact_max=self._exact_max)
        route_of: list[str] = []
        for name, vectors in self._vectors.items():
            index.add(vectors, np.arange(len(route_of), len(route_of) + len(vectors)))
            route_of += [name] * len(vectors)
        self._index, self._route_of = index, route_of

    def score(
        self, vectors: npt.NDArray[np.float32], allowed: Iterable[str] | None = None
    ) -> Scored:
        """Best route by nearest-exemplar similarity; `probability` is that similarity."""
        names = tuple(self._routes)
        may = None if allowed is None else frozenset(allowed)
        allow = np.array([may is None or name in may for name in names], dtype=bool)
        col = {name: j for j, name in enumerate(names)}
        k = min(max(self.neighbours, 1), max(len(self._route_of), 1))
        scores, ids = self._index.search(vectors, k)
        cols = np.array(
            [[col[self._route_of[i]] if i >= 0 else -1 for i in row] for row in ids], dtype=np.int64
        ).reshape(ids.shape)
        _, similarity = neighbour_vote(scores, cols, len(names), allow, 1.0)
        sims = np.maximum(similarity, 0.0)
        # A distribution-like stand-in so `Evidence.combine` picks the most similar route.
        probs = np.concatenate([sims, np.zeros((len(vectors), 1), np.float32)], axis=1)
        scored = Evidence(names, allow, probs, probs, similarity).combine(1.0)
        return Scored(
            scored.best, scored.similarity, scored.margin, scored.similarity, scored.alternatives
        )

    def route(
        self, text: str, *, history: Sequence[str] = (), allowed: Iterable[str] | None = None
    ) -> RouteDecision:
        """Decide for one request (history is ignored); see `Router.route`."""
        return self.route_batch([text], allowed=allowed)[0]

    def route_batch(
        self,
        texts: Sequence[str],
        *,
        histories: Sequence[Sequence[str]] | None = None,
        allowed: Iterable[str] | None = None,
    ) -> list[RouteDecision]:
        """Decide for many requests (history is ignored); see `Router.route_batch`."""
        scored = self.score(self.encoder.encode(texts), allowed)
        out = []
        for i, text in enumerate(texts):
            route, sim = scored.best[i], float(scored.probability[i])
            margin, alts = float(scored.margin[i]), scored.alternatives[i]
            if route is not None and sim >= self.threshold:
                why = f"route {route!r}: nearest exemplar similarity {sim:.2f}"
                out.append(routed(self._routes[route], sim, margin, alts, why))
            else:
                why = f"nearest exemplar similarity {sim:.2f} < {self.threshold:.2f}"
                out.append(
                    abstain(
                        text,
                        sim,
                        margin,
                        alts,
                        why,
                        kb_probe=self.kb_probe,
                        rag_min_score=self.rag_min_score,
                    )
                )
        return out

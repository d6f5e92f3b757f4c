"""What the semantic router knows about a batch of requests before it applies any threshold.

`Evidence` holds, per request, the head's class probabilities, the k-nearest-neighbour vote
(similarity-weighted over labelled examples, "none" examples included), and the cosine similarity
of each route's nearest example. `Evidence.combine(head_weight)` blends head and neighbours into
`Scored`: the best route, its probability, its margin over the next class, and its
nearest-example similarity. Calibration keeps the evidence of its held-out folds, so it can pick
the blend weight and the thresholds together without retraining anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Scored:
    """Unthresholded scores of a batch (the route is chosen, not yet accepted).

    Attributes:
        best: best allowed route per row (None when no route is allowed).
        probability: the best route's blended probability.
        margin: its lead over the next route or "none".
        similarity: cosine similarity to the best route's nearest example (-1: none among the k
            nearest neighbours).
        alternatives: up to 3 (route, probability) per row, best first.
    """

    best: list[str | None]
    probability: Floats
    margin: Floats
    similarity: Floats
    alternatives: list[tuple[tuple[str, float], ...]]


@dataclass(frozen=True)
class Evidence:
    """Per-request evidence; columns are `routes` then "none".

    Attributes:
        routes: route names, in column order.
        allowed: (routes,) which routes the request may use; other routes' mass is in "none".
        head: (n, routes + 1) head probabilities.
        neighbours: (n, routes + 1) nearest-neighbour vote.
        similarity: (n, routes) nearest example similarity per route (-1 when not among k).
    """

    routes: tuple[str, ...]
    allowed: npt.NDArray[np.bool_]
    head: Floats
    neighbours: Floats
    similarity: Floats

    def __len__(self) -> int:
        return int(self.head.shape[0])

    def combine(self, head_weight: float) -> Scored:
        """Blend head and neighbours (`head_weight` of the head) and pick each row's best route."""
        n, r = len(self), len(self.routes)
        probs = head_weight * self.head + (1.0 - head_weight) * self.neighbours
        cols = np.flatnonzero(self.allowed)
        if not len(cols):
            zeros = np.zeros(n, np.float32)
            return Scored([None] * n, zeros, zeros - 1, zeros - 1, [()] * n)
        sub = probs[:, cols]
        order = np.argsort(-sub, axis=1, kind="stable")
        rows = np.arange(n)
        top = sub[rows, order[:, 0]]
        runner = sub[rows, order[:, 1]] if len(cols) > 1 else np.zeros(n, np.float32)
        margin = top - np.maximum(runner, probs[:, r])
        best_col = cols[order[:, 0]]
        return Scored(
            best=[self.routes[j] for j in best_col],
            probability=top.astype(np.float32),
            margin=margin.astype(np.float32),
            similarity=self.similarity[rows, best_col].astype(np.float32),
            alternatives=[
                tuple((self.routes[cols[j]], float(sub[i, j])) for j in order[i, :3])
                for i in range(n)
            ],
        )

    @staticmethod
    def concat(parts: Sequence[Evidence]) -> Evidence:
        """Rows of several batches (same routes) stacked."""
        first = parts[0]
        return Evidence(
            first.routes,
            first.allowed,
            np.concatenate([p.head for p in parts]),
            np.concatenate([p.neighbours for p in parts]),
            np.concatenate([p.similarity for p in parts]),
        )

    def take(self, rows: npt.NDArray[np.int64]) -> Evidence:
        """A subset of rows."""
        return Evidence(
            self.routes,
            self.allowed,
            self.head[rows],
            self.neighbours[rows],
            self.similarity[rows],
        )


def neighbour_vote(
    scores: Floats,
    cols: npt.NDArray[np.int64],
    n_routes: int,
    allowed: npt.NDArray[np.bool_],
    temperature: float,
) -> tuple[Floats, Floats]:
    """Similarity-weighted class vote and per-route nearest similarity from k-NN results.

    Args:
        scores: (n, k) cosine similarities, best first.
        cols: (n, k) class column of each neighbour (`n_routes` is "none"; -1: no neighbour).
        n_routes: number of routes.
        allowed: (n_routes,) routes the request may use; others vote for "none".
        temperature: softness of the vote: weights are exp((s - s_best) / temperature).

    Returns:
        (n, n_routes + 1) vote and (n, n_routes) nearest similarity per route (-1 if absent).
    """
    n = scores.shape[0]
    valid = cols >= 0
    folded = np.where(valid & (cols < n_routes), cols, n_routes)
    blocked = np.append(~allowed, False)
    folded = np.where(blocked[folded], n_routes, folded)
    top = np.where(valid[:, :1], scores[:, :1], 0.0)
    weights = np.where(valid, np.exp((scores - top) / temperature), 0.0)
    vote = np.zeros((n, n_routes + 1), np.float32)
    similarity = np.full((n, n_routes), -1.0, np.float32)
    # only the classes some neighbour votes for: the others keep 0 and -1 (the cost follows
    # the k neighbours, not the number of routes)
    for c in np.unique(folded[valid]).tolist():
        hit = valid & (folded == c)
        vote[:, c] = (weights * hit).sum(axis=1)
        if c < n_routes:
            similarity[:, c] = np.where(hit, scores, -1.0).max(axis=1, initial=-1.0)
    total = vote.sum(axis=1, keepdims=True)
    vote = np.where(total > 0, vote / np.maximum(total, 1e-12), 1.0 / (n_routes + 1))
    return vote.astype(np.float32), similarity

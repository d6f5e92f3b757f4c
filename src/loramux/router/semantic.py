"""The semantic router: classifier head + nearest-neighbour vote, gated by calibrated thresholds.

For each request it embeds the last user turn and gathers `Evidence`: the head's probabilities
over the routes and the out-of-scope class "none", and a similarity-weighted vote of the k nearest
labelled examples (route exemplars, labelled calibration requests, "none" examples) from the faiss
index. The blend of the two picks the best route; the request goes there only if the route's
probability, its margin over the next class and its nearest-example similarity all clear the
`Thresholds` fitted by `calibration.fit`. Otherwise the router abstains: RAG when the knowledge
base has a close passage, else the base model; never a guessed adapter.

An ambiguous follow-up ("Can it be extended?") abstains on its own. When the request carries
earlier user turns, the router routes the text of the last 1, 2, ... earlier turns joined with it;
each turn further back needs more confidence (the room above the probability threshold shrinks by
`history_decay` per turn), and the decision's reason says that history decided.

Routes not in `allowed` are treated as absent: their probability mass and votes count as "none".
Adding or removing a route re-indexes the stored vectors and retrains the head from its current
weights; nothing already known is encoded again, and with a `cache` (`router/cache.py`) neither
the routes' texts nor a head trained from the same inputs before a restart.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from loramux.config import RouteSpec
from loramux.embed.encoder import Encoder
from loramux.embed.index import FaissIndex
from loramux.errors import RouterNotFittedError
from loramux.router.base import KbProbe, abstain, routed
from loramux.router.cache import RouterCache
from loramux.router.decision import RouteDecision
from loramux.router.evidence import Evidence, Scored, neighbour_vote
from loramux.router.head import NONE, SoftmaxHead
from loramux.router.training import Kind, TrainingOptions, TrainingSet, build_training, route_rows

_VARIANT_WEIGHT = 0.5
"""Weight of an exemplar variant relative to a real example of the same class."""


@dataclass(frozen=True)
class Thresholds:
    """How the router scores and when it may send a request to a route.

    Attributes:
        probability: least blended probability of the chosen route (routes without their own).
        per_route: least probability per route, where calibration raised it.
        margin: least lead of the chosen route over the next class.
        similarity: least cosine similarity to the chosen route's nearest example.
        head_weight: share of the head in the blend with the neighbour vote.
    """

    probability: float = 0.8
    per_route: Mapping[str, float] = field(default_factory=dict)
    margin: float = 0.3
    similarity: float = 0.3
    head_weight: float = 0.5

    def for_route(self, name: str) -> float:
        """The probability threshold of route `name`."""
        return self.per_route.get(name, self.probability)


@dataclass(frozen=True)
class _State:
    routes: Mapping[str, RouteSpec]
    training: TrainingSet
    head: SoftmaxHead
    index: FaissIndex
    col_of_id: npt.NDArray[np.int64]
    """Class column of each index id (-1: not indexed)."""


class SemanticRouter:
    """Head + neighbour vote + calibrated abstention; see the module docstring.

    Args:
        encoder: text encoder (the one the training set was built with).
        routes: the routes.
        thresholds: scoring and abstention settings; default: conservative built-in values
            (fit with `calibration.fit` for real use).
        options: how the training set and head are built.
        training: a prepared training set (skips encoding); default: built from `routes`.
        head: a trained head matching `training`; default: trained here.
        kb_probe: best knowledge-base passage score for a text, or None without a knowledge base.
        rag_min_score: passage score from which an abstained request gets a RAG answer.
        neighbours: nearest examples in the vote.
        temperature: softness of the vote (weights exp((s - s_best) / temperature)).
        exact_search_max: largest index searched exactly.
        history_turns: earlier user turns used for ambiguous follow-ups (0: never).
        history_decay: how much of the room above the threshold is left per turn further back.
    """

    CONFIG_FIELDS = (
        "neighbours",
        "exact_search_max",
        "history_turns",
        "history_decay",
    )
    """The `router:` keys an unfitted router of this kind is built with (`router.build`)."""

    def __init__(
        self,
        encoder: Encoder,
        routes: Sequence[RouteSpec],
        *,
        thresholds: Thresholds | None = None,
        options: TrainingOptions | None = None,
        training: TrainingSet | None = None,
        head: SoftmaxHead | None = None,
        kb_probe: KbProbe | None = None,
        rag_min_score: float = 0.4,
        neighbours: int = 10,
        temperature: float = 0.05,
        exact_search_max: int = 50_000,
        history_turns: int = 3,
        history_decay: float = 0.5,
    ) -> None:
        self.encoder = encoder
        self.options = options or TrainingOptions()
        self.thresholds = thresholds or Thresholds()
        self.kb_probe = kb_probe
        self.rag_min_score = rag_min_score
        self.neighbours = neighbours
        self.temperature = temperature
        self.exact_search_max = exact_search_max
        self.history_turns = history_turns
        self.history_decay = history_decay
        self._lock = threading.Lock()
        self.cache: RouterCache | None = None
        """Where `add_routes` keeps route vectors and trained heads across restarts."""
        if training is None:
            training = build_training(encoder, routes, (), self.options)
        self._state = self._make_state({spec.name: spec for spec in routes}, training, head)

    # -- state --------------------------------------------------------------------------------

    @property
    def routes(self) -> dict[str, RouteSpec]:
        """The routes, by name."""
        return dict(self._state.routes)

    @property
    def training(self) -> TrainingSet:
        """The current training set."""
        return self._state.training

    @property
    def head(self) -> SoftmaxHead:
        """The current classifier head."""
        return self._state.head

    def add_routes(self, specs: Sequence[RouteSpec]) -> None:
        """Add or replace routes: encode their exemplars, index them, retrain the head warm
        once for all of them."""
        if not specs:
            return
        texts, labels, kinds = route_rows(list(specs), self.options)
        cache = self.cache
        vectors = cache.encode(self.encoder, texts) if cache else self.encoder.encode(texts)
        with self._lock:
            state = self._state
            training = state.training
            for spec in specs:
                training = training.without_label(spec.name)
            for kind in (Kind.EXEMPLAR, Kind.VARIANT):
                pick = [i for i, k in enumerate(kinds) if k == kind]
                training = training.extend(vectors[pick], [labels[i] for i in pick], kind)
            routes = {**state.routes, **{spec.name: spec for spec in specs}}
            self._state = self._make_state(routes, training, None, warm=state.head)

    def remove_route(self, name: str) -> None:
        """Remove a route with its exemplars and labelled examples; retrain the head warm."""
        with self._lock:
            state = self._state
            if name not in state.routes:
                return
            routes = {k: v for k, v in state.routes.items() if k != name}
            training = state.training.without_label(name)
            self._state = self._make_state(routes, training, None, warm=state.head)
            per_route = {k: v for k, v in self.thresholds.per_route.items() if k != name}
            self.thresholds = replace(self.thresholds, per_route=per_route)

    def _make_state(
        self,
        routes: Mapping[str, RouteSpec],
        training: TrainingSet,
        head: SoftmaxHead | None,
        *,
        warm: SoftmaxHead | None = None,
    ) -> _State:
        classes = (*routes, NONE)
        stray = sorted(set(training.labels) - set(classes))
        if stray:
            raise RouterNotFittedError(
                f"training data names routes that are not defined: {', '.join(stray)}"
            )
        if head is None:

            def train() -> SoftmaxHead:
                return train_head(training, classes, self.options, warm=warm)

            cache = self.cache
            head = cache.head(training, classes, self.options, warm, train) if cache else train()
        elif tuple(head.classes) != classes:
            raise RouterNotFittedError(
                f"the head's classes {list(head.classes)} do not match the routes {list(classes)}; "
                "fit the router again"
            )
        mask = training.index_mask
        index = FaissIndex(self.encoder.dim, exact_max=self.exact_search_max)
        index.add(training.vectors[mask], training.ids[mask])
        col = {name: j for j, name in enumerate(classes)}
        col_of_id = np.full(int(training.ids.max()) + 1 if len(training) else 0, -1, np.int64)
        col_of_id[training.ids[mask]] = [
            col[label] for label, keep in zip(training.labels, mask, strict=True) if keep
        ]
        return _State(MappingProxyType(dict(routes)), training, head, index, col_of_id)

    # -- scoring ------------------------------------------------------------------------------

    def evidence(
        self, vectors: npt.NDArray[np.float32], allowed: Iterable[str] | None = None
    ) -> Evidence:
        """Head probabilities, neighbour vote and nearest similarities for encoded requests."""
        state = self._state
        names = tuple(state.routes)
        may = None if allowed is None else frozenset(allowed)
        allow = np.array([may is None or name in may for name in names], dtype=bool)
        head = state.head.predict_proba(vectors)
        if not allow.all():
            head[:, -1] += head[:, :-1][:, ~allow].sum(axis=1)
            head[:, np.flatnonzero(~allow)] = 0.0
        scores, ids = state.index.search(vectors, self.neighbours)
        cols = np.where(ids >= 0, state.col_of_id[np.maximum(ids, 0)], -1) if ids.size else ids
        vote, similarity = neighbour_vote(scores, cols, len(names), allow, self.temperature)
        return Evidence(names, allow, head, vote, similarity)

    def score(
        self, vectors: npt.NDArray[np.float32], allowed: Iterable[str] | None = None
    ) -> Scored:
        """Unthresholded scores for encoded requests, blended with the fitted head weight."""
        return self.evidence(vectors, allowed).combine(self.thresholds.head_weight)

    def passes(self, scored: Scored, i: int, *, strictness: float = 1.0) -> tuple[bool, str]:
        """Whether row `i` clears the thresholds, and why (or why not).

        Args:
            scored: the batch's scores.
            i: the row.
            strictness: share of the room above the probability threshold that is left
                (1: the fitted threshold; 0.5: halfway between it and 1).
        """
        route = scored.best[i]
        if route is None:
            return False, "no route is registered, or allowed for this request"
        t = self.thresholds
        p, m, s = (
            float(scored.probability[i]),
            float(scored.margin[i]),
            float(scored.similarity[i]),
        )
        need = 1.0 - (1.0 - t.for_route(route)) * strictness
        if p < need:
            return False, f"best route {route!r} probability {p:.2f} < {need:.2f}"
        if m < t.margin:
            return False, f"best route {route!r} margin {m:.2f} < {t.margin:.2f}"
        if s < t.similarity:
            return False, (
                f"best route {route!r} nearest example similarity {s:.2f} < {t.similarity:.2f}"
            )
        return True, f"route {route!r}: probability {p:.2f}, margin {m:.2f}, similarity {s:.2f}"

    # -- routing ------------------------------------------------------------------------------

    def route(
        self, text: str, *, history: Sequence[str] = (), allowed: Iterable[str] | None = None
    ) -> RouteDecision:
        """Decide for one request; see `Router.route`."""
        return self.route_batch([text], histories=[history], allowed=allowed)[0]

    def route_batch(
        self,
        texts: Sequence[str],
        *,
        histories: Sequence[Sequence[str]] | None = None,
        allowed: Iterable[str] | None = None,
    ) -> list[RouteDecision]:
        """Decide for many requests with one encoder pass; see `Router.route_batch`."""
        allow = None if allowed is None else frozenset(allowed)
        scored = self.score(self.encoder.encode(texts), allow)
        out: list[RouteDecision | None] = []
        pending: list[int] = []
        for i in range(len(texts)):
            ok, why = self.passes(scored, i)
            out.append(self._routed(scored, i, why) if ok else None)
            if not ok:
                pending.append(i)
        follow = self._with_history(texts, histories or (), pending, allow)
        for i in pending:
            if i in follow:
                out[i] = follow[i]
                continue
            history = histories[i] if histories and i < len(histories) else ()
            out[i] = abstain(
                " ".join([*history[-1:], texts[i]]),
                float(scored.probability[i]),
                float(scored.margin[i]),
                scored.alternatives[i],
                self.passes(scored, i)[1],
                kb_probe=self.kb_probe,
                rag_min_score=self.rag_min_score,
            )
        return [decision for decision in out if decision is not None]

    def _with_history(
        self,
        texts: Sequence[str],
        histories: Sequence[Sequence[str]],
        pending: Sequence[int],
        allow: frozenset[str] | None,
    ) -> dict[int, RouteDecision]:
        """Route abstained follow-ups again, joined with 1, 2, ... earlier user turns."""
        out: dict[int, RouteDecision] = {}
        todo = [i for i in pending if i < len(histories) and histories[i]]
        for back in range(1, self.history_turns + 1):
            todo = [i for i in todo if i not in out and len(histories[i]) >= back]
            if not todo:
                break
            joined = [" ".join([*list(histories[i])[-back:], texts[i]]) for i in todo]
            scored = self.score(self.encoder.encode(joined), allow)
            strictness = self.history_decay ** (back - 1)
            for n, i in enumerate(todo):
                ok, why = self.passes(scored, n, strictness=strictness)
                if ok:
                    why = (
                        f"follow-up: ambiguous alone, routed with the previous {back} user "
                        f"turn(s) (history decay {self.history_decay:g}); {why}"
                    )
                    out[i] = self._routed(scored, n, why)
        return out

    def _routed(self, scored: Scored, i: int, why: str) -> RouteDecision:
        route = scored.best[i]
        if route is None:  # passes() never accepts such a row
            raise RouterNotFittedError("internal error: routed a request without a route")
        return routed(
            self._state.routes[route],
            float(scored.probability[i]),
            float(scored.margin[i]),
            scored.alternatives[i],
            why,
        )


def train_head(
    training: TrainingSet,
    classes: Sequence[str],
    options: TrainingOptions,
    *,
    warm: SoftmaxHead | None = None,
) -> SoftmaxHead:
    """Train the head: every class weighs the same in total; a variant weighs half an example.

    Args:
        training: the rows.
        classes: route names then `NONE`.
        options: L2 penalty and steps.
        warm: a head to start from (half the steps are enough).

    Returns:
        The head.
    """
    col = {name: j for j, name in enumerate(classes)}
    y = np.array([col[label] for label in training.labels], dtype=np.int64)
    kind_w = np.where(training.kinds == Kind.VARIANT, _VARIANT_WEIGHT, 1.0)
    class_total = np.bincount(y, weights=kind_w, minlength=len(classes))
    weight = kind_w / np.maximum(class_total[y], 1e-9)
    max_iter = options.max_iter if warm is None else max(options.max_iter // 2, 50)
    return SoftmaxHead.fit(
        training.vectors,
        training.labels,
        classes,
        l2=options.l2,
        sample_weight=weight,
        init=warm,
        max_iter=max_iter,
    )

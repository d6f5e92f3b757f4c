"""Unit tests of the router's parts: encoder cache, vector index, head, evaluation maths, routes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loramux.config import RoutesFile, RouteSpec, load_routes
from loramux.embed.encoder import CachingEncoder
from loramux.embed.index import FaissIndex
from loramux.errors import ConfigError
from loramux.router.baseline import BaselineRouter
from loramux.router.decision import RouteDecision, RouteTarget
from loramux.router.fit.data import LabelledItem
from loramux.router.fit.evaluation import _measure
from loramux.router.head import NONE, SoftmaxHead
from loramux.router.semantic import SemanticRouter
from tests.builders import small_routes
from tests.fakes import TinyEncoder
from tests.router.conftest import DEMO_ROUTES


def _unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_real_encoder_gives_unit_float32_vectors_like_sentence_transformers(encoder: Any) -> None:
    texts = ["How do I reset my password?", "vpn", "A longer sentence about expense reports."]
    vectors = encoder.encode(texts)
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    reference = encoder.inner._model.encode(texts, normalize_embeddings=True)
    assert np.min(np.sum(vectors * reference, axis=1)) > 0.9999


def test_encoding_the_same_text_twice_hits_the_cache() -> None:
    inner = TinyEncoder()
    cached = CachingEncoder(inner, size=2)
    first = cached.encode(["a b", "c d", "a b"])
    assert inner.texts_encoded == 2
    again = cached.encode(["a b"])
    assert inner.texts_encoded == 2
    assert np.array_equal(again[0], first[0])
    cached.encode(["e f", "g h"])  # evicts the oldest entries
    cached.encode(["a b"])
    assert inner.texts_encoded == 5


def test_flat_index_finds_the_exact_neighbour_and_removes_ids() -> None:
    vectors = _unit(300, 32)
    index = FaissIndex(32)
    index.add(vectors, np.arange(300) + 1000)
    scores, ids = index.search(vectors[:5], 3)
    assert index.exact
    assert list(ids[:, 0]) == [1000, 1001, 1002, 1003, 1004]
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5)
    index.remove(np.array([1000]))
    assert index.search(vectors[:1], 1)[1][0, 0] != 1000
    assert len(index) == 299


def test_index_switches_to_hnsw_above_exact_max_and_still_finds_neighbours(
    tmp_path: Path,
) -> None:
    vectors = _unit(600, 32)
    index = FaissIndex(32, exact_max=500)
    index.add(vectors[:400], np.arange(400))
    assert index.exact
    index.add(vectors[400:], np.arange(400, 600))
    assert not index.exact
    ids = index.search(vectors[::50], 1)[1][:, 0]
    assert list(ids) == list(range(0, 600, 50))
    index.save(tmp_path / "index.faiss")
    loaded = FaissIndex.load(tmp_path / "index.faiss", exact_max=500)
    assert len(loaded) == 600
    assert not loaded.exact
    assert list(loaded.search(vectors[::50], 1)[1][:, 0]) == list(range(0, 600, 50))


def test_head_learns_separable_classes_and_warm_starts() -> None:
    centers = _unit(3, 16, seed=1)
    rng = np.random.default_rng(2)
    x = np.repeat(centers, 30, axis=0) + 0.05 * rng.normal(size=(90, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = ["a"] * 30 + ["b"] * 30 + [NONE] * 30
    head = SoftmaxHead.fit(x, labels, ("a", "b", NONE), l2=1e-4)
    assert (np.array(head.classes)[head.predict_proba(x).argmax(1)] == labels).mean() == 1.0
    grown = SoftmaxHead.fit(x, labels, ("a", "b", "c", NONE), init=head, max_iter=50)
    assert grown.predict_proba(x)[:, 2].max() < 0.05  # the class without rows stays unlikely


def test_report_metrics_follow_their_definitions() -> None:
    def d(route: str | None) -> RouteDecision:
        target = RouteTarget.ADAPTER if route else RouteTarget.BASE
        return RouteDecision(
            target, route, route, 0.9 if route else 0.2, 0.5, ((route or "a", 0.9),), ""
        )

    data = [
        LabelledItem("1", "a"),
        LabelledItem("2", "a"),
        LabelledItem("3", "b"),
        LabelledItem("4", NONE),
        LabelledItem("5", NONE),
    ]
    report = _measure(["a", "b"], data, [d("a"), d(None), d("a"), d("b"), d(None)])
    assert report.coverage == pytest.approx(2 / 3)
    assert report.routed_precision == pytest.approx(1 / 3)
    assert report.accuracy_in_scope == pytest.approx(1 / 3)
    assert report.oos_sent == pytest.approx(0.5)
    assert report.per_route["a"].recall == pytest.approx(0.5)
    assert report.confusion[report.confusion_rows.index("b")][report.confusion_cols.index("a")] == 1


def test_baseline_routes_by_nearest_exemplar_and_abstains_below_threshold(encoder: Any) -> None:
    router = BaselineRouter(encoder, small_routes(), threshold=0.5)
    assert router.route("How do I reset my password?").route == "it"
    assert router.route("What is the capital of Peru?").abstained


def test_routes_file_rejects_unknown_keys_and_reserved_names() -> None:
    with pytest.raises(ValueError, match="utterance"):
        RoutesFile.model_validate({"routes": [{"name": "hr", "utterance": ["x"]}]})
    with pytest.raises(ValueError, match="reserved"):
        RouteSpec(name="none", utterances=["x"])
    with pytest.raises(ValueError, match="unique"):
        RoutesFile.model_validate(
            {"routes": [{"name": "hr", "utterances": ["x"]}, {"name": "hr", "utterances": ["y"]}]}
        )
    assert RouteSpec(name="docs", target="rag", utterances=["x"]).adapter is None


def test_shipped_demo_routes_load(tmp_path: Path) -> None:
    routes = load_routes(DEMO_ROUTES)
    assert {route.name for route in routes} >= {"hr", "it", "finance"}
    bad = tmp_path / "routes.yaml"
    bad.write_text("routes:\n  - name: hr\n    utterances: []\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"`routes\.0\.utterances`"):
        load_routes(bad)


def test_router_without_routes_sends_everything_to_the_base_model() -> None:
    for router in (SemanticRouter(TinyEncoder(), []), BaselineRouter(TinyEncoder(), [])):
        decisions = router.route_batch(["hello", "how are you"])
        assert [d.target for d in decisions] == [RouteTarget.BASE, RouteTarget.BASE]


def test_the_neighbour_vote_over_many_routes_equals_the_vote_over_every_class() -> None:
    """The vote visits only the classes the neighbours vote for; every class gets what a pass
    over all of them gives (0 vote and -1 similarity for the others), bit for bit."""
    from loramux.router.evidence import neighbour_vote

    rng = np.random.default_rng(3)
    n, k, n_routes = 6, 10, 1000
    scores = np.sort(rng.uniform(0.1, 0.9, (n, k)).astype(np.float32), axis=1)[:, ::-1].copy()
    cols = rng.integers(-1, n_routes + 1, (n, k))
    cols[0] = -1  # a request without neighbours
    allowed = rng.random(n_routes) > 0.2
    vote, similarity = neighbour_vote(scores, cols, n_routes, allowed, 0.05)
    # the reference: one pass per class
    valid = cols >= 0
    folded = np.where(valid & (cols < n_routes), cols, n_routes)
    folded = np.where(np.append(~allowed, False)[folded], n_routes, folded)
    top = np.where(valid[:, :1], scores[:, :1], 0.0)
    weights = np.where(valid, np.exp((scores - top) / 0.05), 0.0)
    want = np.zeros((n, n_routes + 1), np.float32)
    want_sim = np.full((n, n_routes), -1.0, np.float32)
    for c in range(n_routes + 1):
        hit = valid & (folded == c)
        want[:, c] = (weights * hit).sum(axis=1)
        if c < n_routes:
            want_sim[:, c] = np.where(hit, scores, -1.0).max(axis=1, initial=-1.0)
    total = want.sum(axis=1, keepdims=True)
    want = np.where(total > 0, want / np.maximum(total, 1e-12), 1.0 / (n_routes + 1))
    np.testing.assert_array_equal(vote, want.astype(np.float32))
    np.testing.assert_array_equal(similarity, want_sim)

"""The router's disk cache (`router/cache.py`): a restart encodes no route text again and trains
no head again when its inputs are the same; a broken or foreign cache is recomputed, never fatal.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from loramux.config import RouteSpec
from loramux.router.cache import HEAD, VECTORS, RouterCache
from loramux.router.semantic import SemanticRouter
from tests.builders import small_routes
from tests.fakes import TinyEncoder

ADAPTER_ROUTES = [
    RouteSpec(name=f"a{i}", utterances=[f"How do I book {w}?", f"Who handles {w}?", f"{w} help"])
    for i, w in enumerate(["parking", "badges", "visas", "lockers", "bikes", "meals"])
]
QUESTIONS = ["How do I book parking?", "Who handles visas?", "How many vacation days do I get?"]


def start(folder: Path, encoder: TinyEncoder, routes: list[RouteSpec]) -> SemanticRouter:
    """What `loramux serve` does at start: the configured routes, then the adapters' routes."""
    router = SemanticRouter(encoder, small_routes())
    router.cache = RouterCache(folder)
    router.add_routes(routes)
    return router


def decisions(router: SemanticRouter) -> list[tuple[str | None, float]]:
    return [(d.adapter, round(d.score or 0.0, 6)) for d in router.route_batch(QUESTIONS)]


def test_a_restart_encodes_no_route_text_and_trains_no_head(tmp_path: Path) -> None:
    first_encoder = TinyEncoder()
    first = start(tmp_path, first_encoder, ADAPTER_ROUTES)
    assert first.cache is not None
    assert first.cache.misses > 0
    assert first.cache.head_hits == 0
    encoder = TinyEncoder()
    before = encoder.texts_encoded
    again = start(tmp_path, encoder, ADAPTER_ROUTES)
    assert again.cache is not None
    # only the configured routes of the constructor were encoded, none of the adapters' texts
    assert again.cache.misses == 0
    assert again.cache.hits == first.cache.misses
    assert encoder.texts_encoded - before == first_encoder.texts_encoded - first.cache.misses
    assert again.cache.head_hits == 1
    np.testing.assert_array_equal(again.head.weights, first.head.weights)
    uncached = SemanticRouter(TinyEncoder(), small_routes())
    uncached.add_routes(ADAPTER_ROUTES)
    assert decisions(again) == decisions(first) == decisions(uncached)


def test_other_routes_train_a_new_head_and_drop_the_texts_no_longer_used(tmp_path: Path) -> None:
    start(tmp_path, TinyEncoder(), ADAPTER_ROUTES)
    fewer = start(tmp_path, TinyEncoder(), ADAPTER_ROUTES[:2])
    assert fewer.cache is not None
    assert fewer.cache.head_hits == 0
    assert fewer.cache.misses == 0
    with np.load(tmp_path / VECTORS) as data:
        assert len(data["keys"]) == fewer.cache.hits  # the other four adapters' texts are gone
    uncached = SemanticRouter(TinyEncoder(), small_routes())
    uncached.add_routes(ADAPTER_ROUTES[:2])
    assert decisions(fewer) == decisions(uncached)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_broken_cache_is_recomputed_with_a_warning(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    first = start(tmp_path, TinyEncoder(), ADAPTER_ROUTES)
    for name in (VECTORS, HEAD):
        path = tmp_path / name
        data = path.read_bytes()
        path.write_bytes(
            {"garbage": b"not a zip file", "truncated": data[: len(data) // 2], "empty": b""}[
                damage
            ]
        )
    with caplog.at_level(logging.WARNING, logger="loramux.router.cache"):
        again = start(tmp_path, TinyEncoder(), ADAPTER_ROUTES)
    assert again.cache is not None
    assert first.cache is not None
    assert again.cache.misses == first.cache.misses
    assert again.cache.head_hits == 0
    assert sum("ignoring" in r.getMessage() for r in caplog.records) == 2
    assert decisions(again) == decisions(first)
    # and the files were written again, whole: the next start hits
    third = start(tmp_path, TinyEncoder(), ADAPTER_ROUTES)
    assert third.cache is not None
    assert third.cache.misses == 0
    assert third.cache.head_hits == 1


def test_another_encoders_vectors_are_not_used(tmp_path: Path) -> None:
    start(tmp_path, TinyEncoder(name="tiny"), ADAPTER_ROUTES)
    other = start(tmp_path, TinyEncoder(name="other"), ADAPTER_ROUTES)
    assert other.cache is not None
    assert other.cache.hits == 0
    with np.load(tmp_path / VECTORS) as data:
        assert str(data["encoder"]) == "other"


def test_an_unwritable_cache_dir_only_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with caplog.at_level(logging.WARNING, logger="loramux.router.cache"):
        router = start(blocker / "cache", TinyEncoder(), ADAPTER_ROUTES)
    assert "cannot write" in caplog.text
    uncached = SemanticRouter(TinyEncoder(), small_routes())
    uncached.add_routes(ADAPTER_ROUTES)
    assert decisions(router) == decisions(uncached)

"""The router seam's name -> class table, and the factory the API calls at start-up.

`RouterConfig.kind` picks a router by name from `ROUTER_CLS`; `build_router` loads a fitted router
(`router.fitted`) when there is one, else builds one from the routes file with default thresholds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from loramux.config import RouterConfig, RouteSpec, load_routes
from loramux.embed.encoder import Encoder
from loramux.errors import RouterNotFittedError
from loramux.router.base import KbProbe, Router
from loramux.router.baseline import BaselineRouter
from loramux.router.persist import load_router
from loramux.router.semantic import SemanticRouter
from loramux.router.versions import resolve_fitted

logger = logging.getLogger(__name__)

ROUTER_CLS: dict[str, type[SemanticRouter] | type[BaselineRouter]] = {
    "semantic": SemanticRouter,
    "baseline": BaselineRouter,
}
"""Routers by name (`router.kind` in the config)."""


def build_router(
    config: RouterConfig,
    encoder: Encoder,
    *,
    routes: list[RouteSpec] | None = None,
    kb_probe: KbProbe | None = None,
    rag_min_score: float = 0.4,
) -> Router:
    """The router the config describes.

    Args:
        config: the `router` section.
        encoder: text encoder (shared with the knowledge base).
        routes: routes to use instead of `config.routes` (ignored when a fitted router is loaded).
        kb_probe: best knowledge-base passage score for a text, or None without a knowledge base.
        rag_min_score: passage score from which an abstained request gets a RAG answer
            (`kb.min_score`).

    Returns:
        A fitted router from `config.fitted` (a version store's active version), else an
        unfitted one of kind `config.kind` with built-in thresholds.

    Raises:
        RouterNotFittedError: neither a fitted router nor routes are configured, or the fitted
            router does not match the encoder.
        ConfigError: a routes or fitted file is invalid.
    """
    if config.fitted is not None:
        router = load_router(
            resolve_fitted(config.fitted),
            encoder,
            kb_probe=kb_probe,
            rag_min_score=rag_min_score,
            exact_search_max=config.exact_search_max,
            history_turns=config.history_turns,
            history_decay=config.history_decay,
        )
        if type(router) is not ROUTER_CLS[config.kind]:
            logger.warning(
                "router: %s holds a %s router; `router.kind` %r is ignored",
                config.fitted,
                type(router).__name__,
                config.kind,
            )
        return router
    if routes is None:
        if config.routes is None:
            raise RouterNotFittedError(
                "no routes: set `router.routes` (a routes YAML) or `router.fitted` (from "
                "`loramux router fit`) in the config"
            )
        routes = load_routes(config.routes)
    logger.info("router: no fitted router configured; using built-in thresholds")
    return unfitted_router(config, encoder, routes, kb_probe=kb_probe, rag_min_score=rag_min_score)


def unfitted_router(
    config: RouterConfig,
    encoder: Encoder,
    routes: Sequence[RouteSpec],
    *,
    kb_probe: KbProbe | None = None,
    rag_min_score: float = 0.4,
) -> Router:
    """A router of kind `config.kind` from `ROUTER_CLS`, with built-in thresholds, built with
    the `router:` keys that kind reads (its `CONFIG_FIELDS`)."""
    cls = ROUTER_CLS[config.kind]
    settings = {field: getattr(config, field) for field in cls.CONFIG_FIELDS}
    return cls(encoder, routes, kb_probe=kb_probe, rag_min_score=rag_min_score, **settings)

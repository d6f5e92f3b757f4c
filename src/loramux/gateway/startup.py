"""Start-up and shutdown of the app's services, in dependency order.

engine -> registry (adapters from the config are registered if new, every served version is
loaded into the engine) -> encoder, knowledge base (ingested from `kb.sources` when they
changed) and router (adapters' route utterances join it) -> dispatcher and chat service.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from loramux.adapters.loading import check_ref_intact
from loramux.adapters.registry import AdapterRegistry
from loramux.adapters.validation import LLAMA_MODULES, BaseModelSpec, spec_from_hf_config
from loramux.config import LoramuxConfig
from loramux.embed.device import embedder_device
from loramux.errors import LoramuxError
from loramux.gateway.access import open_gate
from loramux.gateway.dispatch import Dispatcher
from loramux.gateway.service import ChatService
from loramux.gateway.services import AppServices
from loramux.serve.engine import Engine
from loramux.serve.paging import PagedEngine

if TYPE_CHECKING:
    from loramux.embed.encoder import Encoder
    from loramux.gateway.metrics import GatewayMetrics
    from loramux.gateway.router_reload import RouterReloader
    from loramux.rag.knowledge_base import KnowledgeBase
    from loramux.router.base import Router

logger = logging.getLogger(__name__)

ROUTER_CACHE = "router-cache"
"""The router's cache of route vectors and its head (`router/cache.py`), under the data dir."""


async def open_services(
    config: LoramuxConfig, engine: Engine, *, metrics: GatewayMetrics | None = None
) -> AppServices:
    """Start everything the API needs (the engine included); `metrics` counts its requests.

    Raises:
        LoramuxError: a configured adapter, router or knowledge base cannot be used.
    """
    engine = page_adapters(config, engine)
    await engine.start()
    registry = AdapterRegistry.open(
        config.paths.data_dir,
        base_spec(config),
        config.registry,
        engine=engine,
        pins=config.engine.pinned_adapters,
    )
    await registry.start()
    await _register_configured(config, registry)
    await _prewarm(config, registry, engine)
    encoder, kb, router = await asyncio.to_thread(_open_routing, config)
    dispatcher = Dispatcher(
        registry,
        router,
        kb,
        top_k=config.kb.top_k,
        max_batch=config.router.batch_size,
        quote=config.kb.quote,
    )
    await dispatcher.learn_routes([(a.name, a.utterances) for a in registry.adapters()])
    gate = open_gate(config)
    svc = AppServices(
        config=config,
        engine=engine,
        registry=registry,
        dispatcher=dispatcher,
        chat=ChatService(config, engine, dispatcher, gate=gate, metrics=metrics),
        admin_keys=gate.admin,
        started_at=time.time(),
        encoder=encoder,
        router=router,
        kb=kb,
        keyring=gate.keyring,
        gate=gate,
        metrics=metrics,
    )
    if metrics is not None:
        metrics.bind(svc)
    svc.tasks.append(asyncio.create_task(registry.watch(), name="registry-watch"))
    reloader = _router_reloader(config, svc)
    if reloader is not None:
        svc.extra["router_reloader"] = reloader
        svc.tasks.append(asyncio.create_task(reloader.run(), name="router-reload"))
    if config.auth.limits_scope == "fleet" and gate.limiter is not None:
        from loramux.keys.fleet_limits import FleetLimits  # psycopg: only for a fleet

        fleet = FleetLimits(config.registry.dsn(), gate.limiter)
        svc.tasks.append(asyncio.create_task(fleet.run(), name="fleet-limits"))
    served = registry.served_versions()
    logger.info(
        "serving %s on the %s engine; adapters: %s; router: %s; knowledge base: %s",
        config.model.id,
        engine.name,
        ", ".join(v.key for v in served) or "-",
        f"{len(router.routes)} routes" if router else "off",
        f"{len(kb)} passages" if kb else "off",
    )
    return svc


def _router_reloader(config: LoramuxConfig, svc: AppServices) -> RouterReloader | None:
    """The watcher of a router version store (`router.fitted` a folder), or None."""
    rc = config.router
    if rc.fitted is None or rc.reload_s <= 0 or svc.encoder is None or svc.router is None:
        return None
    from loramux.gateway.router_reload import RouterReloader
    from loramux.router.versions import RouterVersions, is_store

    if not is_store(rc.fitted):
        return None
    encoder, kb = svc.encoder, svc.kb

    def load() -> Router:
        return _make_router(config, encoder, kb)

    return RouterReloader(RouterVersions(rc.fitted), load, svc, rc.reload_s)


def page_adapters(config: LoramuxConfig, engine: Engine) -> PagedEngine:
    """The engine behind a bounded LRU of loaded adapter versions (`engine.max_loaded_adapters`):
    registered is not loaded."""
    if isinstance(engine, PagedEngine):
        return engine
    return PagedEngine(
        engine,
        capacity=config.engine.max_loaded_adapters,
        verify=check_ref_intact,
        wait_timeout_s=config.limits.queue_timeout_s,
        failure_ttl_s=config.engine.adapter_retry_s,
    )


async def _prewarm(config: LoramuxConfig, registry: AdapterRegistry, engine: PagedEngine) -> None:
    """Load the `engine.prewarm_adapters` most requested versions (the registry's counts)."""
    room = min(config.engine.prewarm_adapters, engine.capacity - len(engine.pinned) - 1)
    if room <= 0:
        return
    counts = await asyncio.to_thread(registry.store.request_counts)
    served = {v.key: v for v in registry.servable_versions()}
    hottest = sorted(served, key=lambda key: (-counts.get(key, 0), key))[:room]
    for key in hottest:
        try:
            await engine.add_adapter(served[key].ref())
        except LoramuxError as exc:
            logger.error("cannot pre-warm %s: %s", key, exc.message)
    logger.info("pre-warmed %d adapter versions: %s", len(hottest), ", ".join(hottest) or "-")


async def close_services(svc: AppServices) -> None:
    """Drain (new generations get 503, running ones get `server.drain_timeout_s` to finish),
    then stop the background tasks, the registry and the engine."""
    await svc.chat.admission.drain(svc.config.server.drain_timeout_s)
    for task in svc.tasks:
        task.cancel()
    await asyncio.gather(*svc.tasks, return_exceptions=True)
    if svc.keyring is not None:
        svc.keyring.close()
    await svc.registry.close()
    await svc.engine.stop()


def base_spec(config: LoramuxConfig) -> BaseModelSpec:
    """What adapters are checked against: the base model's id and its linear modules."""
    if config.model.source != "embedded":
        return spec_from_hf_config(Path(config.model.source), name=config.model.id)
    return BaseModelSpec(config.model.id, LLAMA_MODULES)  # SmolLM2 is a Llama


async def _register_configured(config: LoramuxConfig, registry: AdapterRegistry) -> None:
    """Register the config's adapters. New files for a configured name become its main version:
    the config is the source of truth for the adapters it lists."""
    for name, entry in config.adapters.items():
        result = await registry.register(
            entry.path,
            name=name,
            description=entry.description or None,
            actor="config",
            check_root=False,
        )
        if result.created and result.version.version != _main_version(registry, name):
            await registry.promote(name, result.version.version, actor="config")


def _main_version(registry: AdapterRegistry, name: str) -> str | None:
    for version in registry.served_versions():
        if version.name == name:
            return version.version
    return None


def _open_routing(
    config: LoramuxConfig,
) -> tuple[Encoder | None, KnowledgeBase | None, Router | None]:
    """Encoder, knowledge base and router, or Nones when the config turns them off."""
    rc, kc = config.router, config.kb
    if rc.routes is None and rc.fitted is None and not kc.sources:
        return None, None, None
    from loramux.embed.encoder import make_encoder
    from loramux.models import ensure_embedder, quiet_libraries, set_offline
    from loramux.rag.ingest import ingest
    from loramux.rag.knowledge_base import KnowledgeBase
    from loramux.rag.store import CURRENT

    set_offline()
    quiet_libraries()
    ensure_embedder(config.embedder)  # a clear error when the embedder is missing
    device = embedder_device(config.embedder)
    encoder = make_encoder(config.embedder.source, device=device, cache_size=rc.cache_size)
    logger.info("embedder: %s on %s", encoder.name, device)
    kb = None
    kb_dir = kc.dir or config.paths.data_dir / "kb"
    if kc.sources:
        summary = ingest(kc.sources, kb_dir, encoder, chunk_words=kc.chunk_words, prune=True)
        logger.info("knowledge base: %s", summary)
    if (kb_dir / CURRENT).exists():
        kb = KnowledgeBase.load(kb_dir, encoder)
    router = None
    if rc.routes is not None or rc.fitted is not None:
        router = _make_router(config, encoder, kb)
    return encoder, kb, router


def _make_router(config: LoramuxConfig, encoder: Encoder, kb: KnowledgeBase | None) -> Router:
    """The configured router (at start-up, and for each version the reloader swaps in)."""
    from loramux.router.build import build_router
    from loramux.router.cache import RouterCache
    from loramux.router.semantic import SemanticRouter

    router = build_router(
        config.router,
        encoder,
        kb_probe=kb.best_score if kb else None,
        rag_min_score=config.kb.min_score,
    )
    if isinstance(router, SemanticRouter):  # adapters' routes: vectors and head kept on disk
        router.cache = RouterCache(config.paths.data_dir / ROUTER_CACHE)
    return router

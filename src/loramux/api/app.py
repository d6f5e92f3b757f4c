"""The FastAPI app factory: `create_app(config, *, engine=None)`.

Nothing happens at import. The lifespan starts the engine, checks and loads the configured
adapters, and puts the services on `app.state.services`; shutdown stops the engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from loramux import __version__
from loramux.adapters.catalog import AdapterCatalog
from loramux.adapters.version import inspect_adapter
from loramux.api.errors import install_error_handlers
from loramux.api.middleware import RequestContextMiddleware
from loramux.api.routes import health, openai
from loramux.api.service import ChatService
from loramux.api.state import AppServices
from loramux.config import LoramuxConfig
from loramux.serve.engine import Engine, create_engine

logger = logging.getLogger(__name__)


def build_catalog(config: LoramuxConfig) -> AdapterCatalog:
    """Check every adapter in the config and describe it as a version.

    Raises:
        AdapterError: an adapter folder is missing, unsafe, or for another base model.
    """
    catalog = AdapterCatalog(config.model.id)
    for name, entry in config.adapters.items():
        catalog.add(
            inspect_adapter(
                entry.path, name=name, base_model=config.model.id, description=entry.description
            )
        )
    return catalog


def create_app(config: LoramuxConfig, *, engine: Engine | None = None) -> FastAPI:
    """Build the gateway app.

    Args:
        config: the serving config.
        engine: an engine to use instead of the one `config.engine.kind` names (tests pass a
            fake); it is started by the app's lifespan either way.

    Returns:
        The FastAPI app; serve it with uvicorn.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        catalog = build_catalog(config)
        eng = engine if engine is not None else create_engine(config)
        await eng.start()
        for version in catalog.versions():
            await eng.add_adapter(version.ref())
        logger.info(
            "serving %s with the %s engine and %d adapters: %s",
            config.model.id,
            eng.name,
            len(catalog.versions()),
            ", ".join(v.key for v in catalog.versions()) or "-",
        )
        app.state.services = AppServices(
            config=config,
            engine=eng,
            catalog=catalog,
            chat=ChatService(config, eng, catalog),
            started_at=time.time(),
        )
        try:
            yield
        finally:
            await eng.stop()

    app = FastAPI(
        title="loramux",
        version=__version__,
        description="OpenAI-compatible gateway over one base model and many LoRA adapters.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=config.server.max_request_bytes)
    app.include_router(openai.router)
    app.include_router(health.router)
    return app

"""The FastAPI app factory: `create_app(config, *, engine=None)`.

Nothing happens at import. The lifespan opens the services (`api.startup`) and puts them on
`app.state.services`; shutdown closes them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from loramux import __version__
from loramux.api.errors import install_error_handlers
from loramux.api.middleware import RequestContextMiddleware
from loramux.api.routes import adapters, health, openai, routing
from loramux.api.startup import close_services, open_services
from loramux.config import LoramuxConfig
from loramux.serve.engine import Engine, create_engine


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
        svc = await open_services(config, engine if engine is not None else create_engine(config))
        app.state.services = svc
        try:
            yield
        finally:
            await close_services(svc)

    app = FastAPI(
        title="loramux",
        version=__version__,
        description="OpenAI-compatible gateway over one base model and many LoRA adapters.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=config.server.max_request_bytes,
        upload_paths=("/v1/adapters",),
        max_upload_bytes=config.registry.limits.max_total_bytes,
    )
    app.include_router(openai.router)
    app.include_router(routing.router)
    app.include_router(adapters.router)
    app.include_router(health.router)
    return app

"""The FastAPI app factory: `create_app(config, *, engine=None)`.

Nothing happens at import. The lifespan opens the services (`api.startup`) and puts them on
`app.state.services`; shutdown closes them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from loramux import __version__
from loramux.api.dashboard import install_dashboard
from loramux.api.disconnect import CancelOnDisconnectMiddleware
from loramux.api.errors import install_error_handlers
from loramux.api.metrics import MetricsMiddleware
from loramux.api.middleware import RequestContextMiddleware, StartupErrorMiddleware
from loramux.api.routes import adapters, embeddings, health, keys, metrics, openai, routing
from loramux.api.textguard import UnicodeGuardMiddleware
from loramux.api.throttle import AuthThrottleMiddleware
from loramux.config import LoramuxConfig
from loramux.gateway.metrics import GatewayMetrics
from loramux.gateway.startup import close_services, open_services
from loramux.keys.throttle import FailureThrottle
from loramux.serve.engine import Engine
from loramux.serve.supervisor import supervise


def create_app(config: LoramuxConfig, *, engine: Engine | None = None) -> FastAPI:
    """Build the gateway app.

    Args:
        config: the serving config.
        engine: an engine to use instead of the one `config.engine.kind` names (tests pass a
            fake); it is started by the app's lifespan either way, and supervised
            (`serve.supervisor`): a failed engine is stopped and started again.

    Returns:
        The FastAPI app; serve it with uvicorn.
    """

    gateway_metrics = GatewayMetrics(config)  # this app's own Prometheus registry

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = await open_services(
            config,
            supervise(config, engine),  # a watchdog rebuilds it when it fails or hangs
            metrics=gateway_metrics,
        )
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
    app.add_middleware(  # innermost: a client that leaves cancels its generation
        CancelOnDisconnectMiddleware, paths=("/v1/chat/completions", "/v1/completions")
    )
    app.add_middleware(UnicodeGuardMiddleware)  # 400, not a 500 deep inside, for "\ud800"
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=config.server.max_request_bytes,
        upload_paths=("/v1/adapters",),
        max_upload_bytes=config.registry.limits.max_total_bytes,
    )
    app.add_middleware(  # before the request id: a guessing address costs nothing more
        AuthThrottleMiddleware,
        throttle=FailureThrottle(config.auth.max_failures, config.auth.failure_window_s),
    )
    app.add_middleware(MetricsMiddleware, metrics=gateway_metrics)
    app.add_middleware(StartupErrorMiddleware)  # outermost: one line for a failed start-up
    app.state.metrics = gateway_metrics
    app.include_router(openai.router)
    app.include_router(embeddings.router)
    app.include_router(routing.router)
    app.include_router(adapters.router)
    app.include_router(keys.router)
    app.include_router(health.router)
    if config.metrics.enabled:
        app.include_router(metrics.router)
    if config.dashboard.enabled:
        install_dashboard(app, config)
    return app

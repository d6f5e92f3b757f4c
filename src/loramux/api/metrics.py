"""The ASGI middleware that counts HTTP requests, and who may read `/metrics`.

The metrics themselves are `loramux.gateway.metrics.GatewayMetrics`; this module counts every HTTP
request by method, route template (`/v1/adapters/{name}`, never the raw path) and status.
"""

from __future__ import annotations

import ipaddress
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loramux.config import LoramuxConfig
from loramux.gateway.metrics import GatewayMetrics

GENERATION_PATHS = ("/v1/chat/completions", "/v1/completions")


class MetricsMiddleware:
    """Counts HTTP requests by method, route template and status, and their duration."""

    def __init__(self, app: ASGIApp, *, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        m = self.metrics
        status = 500
        generation = scope["method"] == "POST" and scope["path"] in GENERATION_PATHS

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        started = time.perf_counter()
        m.http_in_flight.inc()
        m.generations_in_flight += generation
        try:
            await self.app(scope, receive, send_status)
        finally:
            m.http_in_flight.dec()
            m.generations_in_flight -= generation
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            m.http.labels(scope["method"], path, str(status)).inc()
            m.http_seconds.labels(scope["method"], path).observe(time.perf_counter() - started)


def metrics_open(config: LoramuxConfig) -> bool:
    """Whether `/metrics` is readable without the admin key (`metrics.auth`)."""
    auth = config.metrics.auth
    if auth != "auto":
        return auth == "open"
    host = config.server.host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

"""`GET /metrics`: the Prometheus text exposition of the app's own registry.

Open or behind the admin key as `metrics.auth` says (by default open while the server listens on
loopback only).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from loramux.api.auth import admin_keys
from loramux.api.metrics import metrics_open
from loramux.gateway.metrics import GatewayMetrics

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Every metric of this app, for Prometheus to scrape."""
    if not metrics_open(request.app.state.services.config):
        admin_keys(request).check(request.headers.get("authorization"))
    found: GatewayMetrics = request.app.state.metrics
    return Response(found.render(), media_type=CONTENT_TYPE_LATEST)

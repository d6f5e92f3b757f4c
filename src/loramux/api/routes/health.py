"""Liveness and readiness."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from loramux.api.state import services
from loramux.gateway.services import AppServices
from loramux.serve.paging import PagedEngine
from loramux.serve.supervisor import SupervisedEngine

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is up (it may still be loading the model)."""
    return {"status": "ok"}


@router.get("/ready", response_model=None)
async def ready(svc: Annotated[AppServices, Depends(services)]) -> JSONResponse | dict[str, Any]:
    """200 when the engine serves requests, 503 otherwise (starting, restarting after a failure,
    or draining before shutdown)."""
    admission = svc.chat.admission
    is_ready = svc.engine.ready and not admission.closed
    body: dict[str, Any] = {
        "ready": is_ready,
        "engine": svc.engine.name,
        "adapters_loaded": len(svc.engine.loaded_adapters()),
        "draining": admission.closed,
        "queue": {"in_flight": admission.in_flight, "waiting": admission.depth},
    }
    engine = svc.engine.inner if isinstance(svc.engine, PagedEngine) else svc.engine
    if isinstance(svc.engine, PagedEngine):
        body["adapter_slots"] = svc.engine.capacity
    if isinstance(engine, SupervisedEngine):
        body["supervisor"] = engine.status()
    if not is_ready:
        return JSONResponse(body, status_code=503)
    return body

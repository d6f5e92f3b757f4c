"""Liveness and readiness."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from loramux.api.state import AppServices, services

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is up (it may still be loading the model)."""
    return {"status": "ok"}


@router.get("/ready", response_model=None)
async def ready(svc: Annotated[AppServices, Depends(services)]) -> JSONResponse | dict[str, Any]:
    """200 when the engine serves requests, 503 otherwise."""
    body = {
        "ready": svc.engine.ready,
        "engine": svc.engine.name,
        "adapters_loaded": len(svc.engine.loaded_adapters()),
    }
    if not svc.engine.ready:
        return JSONResponse(body, status_code=503)
    return body

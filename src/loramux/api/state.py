"""The FastAPI dependencies that fetch what the app keeps on `app.state`."""

from __future__ import annotations

from fastapi import Request

from loramux.gateway.services import AppServices


async def services(request: Request) -> AppServices:
    """FastAPI dependency: the app's services (async: FastAPI runs a plain `def` dependency
    in a worker thread, a hop that costs more than the lookup)."""
    svc: AppServices = request.app.state.services
    return svc


async def request_id(request: Request) -> str:
    return str(request.state.request_id)

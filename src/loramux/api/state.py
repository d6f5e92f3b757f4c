"""What the app keeps on `app.state`, typed, and the dependencies that fetch it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request

from loramux.adapters.registry import AdapterRegistry
from loramux.api.access import Gate
from loramux.api.auth import AdminKeys
from loramux.api.dispatch import Dispatcher
from loramux.api.service import ChatService
from loramux.config import LoramuxConfig
from loramux.keys.keyring import Keyring
from loramux.serve.engine import Engine

if TYPE_CHECKING:
    from loramux.api.metrics import GatewayMetrics
    from loramux.rag.knowledge_base import KnowledgeBase
    from loramux.router.base import Router
    from loramux.router.encoder import Encoder


@dataclass
class AppServices:
    config: LoramuxConfig
    engine: Engine
    registry: AdapterRegistry
    dispatcher: Dispatcher
    chat: ChatService
    admin_keys: AdminKeys
    started_at: float
    encoder: Encoder | None = None
    router: Router | None = None
    kb: KnowledgeBase | None = None
    keyring: Keyring | None = None
    """The API keys (in the registry database)."""
    gate: Gate | None = None
    """Authenticates inference requests and applies per-key rate limits."""
    metrics: GatewayMetrics | None = None
    """Prometheus metrics and recent activity (`/metrics`, the dashboard)."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    extra: dict[str, object] = field(default_factory=dict)


async def services(request: Request) -> AppServices:
    """FastAPI dependency: the app's services (async: FastAPI runs a plain `def` dependency
    in a worker thread, a hop that costs more than the lookup)."""
    svc: AppServices = request.app.state.services
    return svc


async def request_id(request: Request) -> str:
    return str(request.state.request_id)

"""The services of one running gateway, typed: what the HTTP app keeps on `app.state.services`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from loramux.adapters.registry import AdapterRegistry
from loramux.config import LoramuxConfig
from loramux.gateway.access import Gate
from loramux.gateway.dispatch import Dispatcher
from loramux.gateway.service import ChatService
from loramux.keys.admin import AdminKeys
from loramux.keys.keyring import Keyring
from loramux.serve.engine import Engine

if TYPE_CHECKING:
    from loramux.embed.encoder import Encoder
    from loramux.gateway.metrics import GatewayMetrics
    from loramux.rag.knowledge_base import KnowledgeBase
    from loramux.router.base import Router


@dataclass
class AppServices:
    """Everything one running gateway holds, opened by `gateway.startup.open_services`."""

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

"""What the app keeps on `app.state`, typed, and the dependency that fetches it."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from loramux.adapters.catalog import AdapterCatalog
from loramux.api.service import ChatService
from loramux.config import LoramuxConfig
from loramux.serve.engine import Engine


@dataclass
class AppServices:
    config: LoramuxConfig
    engine: Engine
    catalog: AdapterCatalog
    chat: ChatService
    started_at: float
    extra: dict[str, object] = field(default_factory=dict)


def services(request: Request) -> AppServices:
    svc: AppServices = request.app.state.services
    return svc


def request_id(request: Request) -> str:
    return str(request.state.request_id)

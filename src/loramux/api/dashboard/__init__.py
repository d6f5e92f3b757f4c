"""The admin dashboard at `/ui`: adapters and their splits, live traffic, routing decisions,
A/B results and evaluation charts, as server-rendered pages behind an admin-key login."""

from __future__ import annotations

from fastapi import FastAPI

from loramux.api.dashboard.routes import router
from loramux.api.dashboard.session import SessionSigner
from loramux.config import LoramuxConfig


def install_dashboard(app: FastAPI, config: LoramuxConfig) -> None:
    """Add the `/ui` pages to `app`, with a session key made now (a restart logs users out)."""
    app.state.ui_sessions = SessionSigner(config.dashboard.session_ttl_s)
    app.include_router(router)


__all__ = ["install_dashboard"]

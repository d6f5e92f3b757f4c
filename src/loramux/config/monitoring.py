"""Config sections for watching the server: `metrics` (Prometheus), `dashboard` (`/ui`) and
`decisions` (the decision log for offline evaluation)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from loramux.config.strict import Strict


class MetricsSettings(Strict):
    """Prometheus metrics (`metrics:` in the serving config)."""

    enabled: bool = True
    """Serve `GET /metrics` (Prometheus text format)."""
    auth: Literal["auto", "open", "admin"] = "auto"
    """Who may read `/metrics`: `open` (anyone who reaches the port), `admin` (the admin key as a
    bearer token), or `auto`: open while `server.host` is a loopback address, else `admin`."""
    window: int = Field(default=500, ge=10, le=100_000)
    """Recent routing decisions the abstention and RAG rate gauges are computed over."""


class DashboardSettings(Strict):
    """The admin dashboard at `/ui` (`dashboard:` in the serving config)."""

    enabled: bool = True
    """Serve the dashboard (it still needs an admin key to log in)."""
    show_texts: bool = False
    """Keep the last user message of recent requests in memory and show it beside the routing
    decision. Off by default: prompts are private and never logged."""
    recent_decisions: int = Field(default=100, ge=1, le=10_000)
    """Routing decisions of recent requests kept in memory for the dashboard."""
    eval_dir: Path | None = None
    """Folder whose PNG charts (`loramux eval`, `loramux router eval`) the dashboard shows;
    default `<paths.data_dir>/eval`."""
    session_ttl_s: float = Field(default=8 * 3600, gt=0)
    """How long a dashboard login lasts. Sessions are signed with a key made at start-up, so a
    restart logs everyone out."""


class DecisionLogSettings(Strict):
    """The decision log (`decisions:` in the serving config): one JSON line per finished
    generation (request id, API key id, router candidates and scores, chosen target, adapter
    version, experiment, propensity, latency, outcome), for offline evaluation of routing and
    A/B tests; `loramux report decisions` summarises it. The prompt is written only when
    `dashboard.show_texts` is on."""

    enabled: bool = True
    """Write the log."""
    dir: Path | None = None
    """Its folder; default `<paths.data_dir>/decisions`. Files are `decisions-<N>.jsonl`."""
    max_file_bytes: int = Field(default=16 << 20, ge=4096)
    """A file that reaches this size is closed and `decisions-<N+1>.jsonl` started."""
    max_files: int = Field(default=8, ge=1, le=100_000)
    """Files kept: the oldest is deleted when a new one would exceed this (bounded disk:
    about max_files x max_file_bytes)."""

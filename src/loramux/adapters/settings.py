"""Settings of the adapter registry, its adapter checks and its experiments.

Typed, frozen pydantic models that reject unknown keys; they import nothing from loramux, so the
serving config (`loramux.config`) can embed them as its `registry:` section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AdapterLimits(BaseModel):
    """Limits an adapter must fit before it is registered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_rank: int = Field(default=64, ge=1, le=1024)
    """Largest LoRA rank the engines serve (vLLM's `max_lora_rank`)."""
    max_file_bytes: int = Field(default=256 << 20, ge=1024)
    """Largest single file in an adapter folder or archive."""
    max_total_bytes: int = Field(default=512 << 20, ge=1024)
    """Largest adapter in total (uncompressed, for archives)."""
    max_files: int = Field(default=32, ge=2, le=10_000)
    """Most files in an adapter folder or archive."""


class ExperimentSettings(BaseModel):
    """How experiments are judged, and whether the registry acts on the verdict by itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_ratings: int = Field(default=100, ge=1)
    """Ratings (up + down) the main version and the challenger each need before a verdict."""
    min_requests: int = Field(default=200, ge=1)
    """Requests each side needs before the error-rate guard can roll a challenger back."""
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    """Confidence of intervals and tests (split over the challengers: Bonferroni)."""
    auto_promote: bool = False
    """Promote a challenger by itself when the test says it is better (logged in the audit)."""
    auto_rollback: bool = False
    """Move a challenger's traffic back to the main version when it is worse (logged)."""
    reservoir_size: int = Field(default=1024, ge=16, le=1_000_000)
    """Latency samples kept per version for p50/p95."""
    flush_every: int = Field(default=256, ge=1)
    """Request records are written every `watch_interval_s`, or at once when 4x this many wait
    (a write is one transaction)."""
    remember_requests: int = Field(default=100_000, ge=100)
    """Recent request -> version records also kept in memory for fast feedback lookups."""
    retention_s: float = Field(default=7 * 24 * 3600, gt=0)
    """How long a request can still receive feedback."""


class RegistrySettings(BaseModel):
    """Settings of the adapter registry (`registry:` in the serving config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: Literal["sqlite"] = "sqlite"
    """Where registry state lives: `sqlite` is `<paths.data_dir>/registry.sqlite3` (WAL)."""
    limits: AdapterLimits = AdapterLimits()
    """Rank, file size and file count limits an adapter must fit."""
    experiment: ExperimentSettings = ExperimentSettings()
    """How A/B experiments are judged, and automatic promotion or rollback."""
    import_roots: tuple[Path, ...] = ()
    """Server-side folders `POST /v1/adapters {"path": ...}` may register from; empty: any."""
    watch_interval_s: float = Field(default=2.0, gt=0)
    """How often the server looks for changes made by other processes (the CLI)."""

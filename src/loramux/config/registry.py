"""Config sections of the adapter registry and access: `adapters`, `registry`, `admin`, `auth`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from loramux.config.strict import Strict

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class AdapterEntry(Strict):
    path: Path
    """A PEFT LoRA folder (adapter_config.json + adapter_model.safetensors)."""
    description: str = ""
    """Shown in `/v1/models` and the dashboard."""


class AdapterLimits(Strict):
    """Limits an adapter must fit before it is registered."""

    max_rank: int = Field(default=64, ge=1, le=1024)
    """Largest LoRA rank the engines serve (vLLM's `max_lora_rank`)."""
    max_file_bytes: int = Field(default=256 << 20, ge=1024)
    """Largest single file in an adapter folder or archive."""
    max_total_bytes: int = Field(default=512 << 20, ge=1024)
    """Largest adapter in total (uncompressed, for archives)."""
    max_files: int = Field(default=32, ge=2, le=10_000)
    """Most files in an adapter folder or archive."""


class ExperimentSettings(Strict):
    """How experiments are judged, and whether the registry acts on the verdict by itself."""

    min_ratings: int = Field(default=100, ge=1)
    """Ratings (up + down) the main version and the challenger each need before a verdict."""
    min_requests: int = Field(default=200, ge=1)
    """Requests each side needs before the error-rate guard can roll a challenger back."""
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    """Confidence of intervals and tests (split over the challengers: Bonferroni). The tests are
    sequential (mSPRT): alpha = 1 - confidence bounds the chance of a false verdict however often
    the results are looked at, auto actions included."""
    mixing_sd: float = Field(default=0.05, gt=0, le=1)
    """Standard deviation of the mSPRT's normal prior on the thumbs-up rate difference: set it
    near the smallest lift worth detecting (0.05 = 5 points). Smaller reaches a verdict sooner
    on small lifts and later on large ones; validity does not depend on it."""
    error_mixing_sd: float = Field(default=0.02, gt=0, le=1)
    """The same for the error-rate guard (a 2-point rise in errors is worth acting on)."""
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


class RegistrySettings(Strict):
    """Settings of the adapter registry (`registry:` in the serving config)."""

    store: Literal["sqlite", "postgres"] = "sqlite"
    """Where registry state (adapters, versions, traffic, experiments, feedback, API keys,
    audit) lives: `sqlite` is `<paths.data_dir>/registry.sqlite3` (WAL), for one gateway;
    `postgres` is the database `database_url` names, shared by every gateway of a fleet (a change
    on one reaches the others within a second or two; needs the `postgres` extra)."""
    database_url: str | None = None
    """PostgreSQL DSN for `store: postgres` (`postgresql://user:pass@host:5432/db` or
    `host=... dbname=...`); env LORAMUX_DATABASE_URL. Required with `postgres`, refused with
    `sqlite`. Prefer the env var (a Kubernetes Secret) to writing a password into YAML."""
    limits: AdapterLimits = AdapterLimits()
    """Rank, file size and file count limits an adapter must fit."""
    experiment: ExperimentSettings = ExperimentSettings()
    """How A/B experiments are judged, and automatic promotion or rollback."""
    import_roots: tuple[Path, ...] = ()
    """Server-side folders `POST /v1/adapters {"path": ...}` may register from; empty: any."""
    watch_interval_s: float = Field(default=2.0, gt=0)
    """How often the server looks for changes made by other processes (the CLI, other
    gateways). With `postgres` a change also wakes every gateway at once (LISTEN/NOTIFY); this
    poll is then the safety net for a lost notification."""
    delete_idle_s: float = Field(default=900.0, ge=0)
    """Deleting an adapter that served a request in the last this many seconds is refused
    unless forced (`DELETE /v1/adapters/{name}?force=true`, `loramux adapters delete --force`);
    an adapter is also "serving" while a version of it is pinned."""

    @model_validator(mode="after")
    def _check_database_url(self) -> RegistrySettings:
        if self.store == "postgres" and not self.database_url:
            raise ValueError(
                "registry.store is postgres but no DSN is given: set registry.database_url or "
                "LORAMUX_DATABASE_URL (e.g. postgresql://loramux@db:5432/loramux)"
            )
        if self.store != "postgres" and self.database_url:
            raise ValueError(
                f"registry.database_url (or LORAMUX_DATABASE_URL) is set but registry.store is "
                f"{self.store}; set registry.store: postgres to use it, or remove it"
            )
        return self

    def dsn(self) -> str:
        """The PostgreSQL DSN (`database_url`); only for `store: postgres`."""
        if not self.database_url:
            raise ValueError("registry.database_url is not set")
        return self.database_url


class AdminSettings(Strict):
    """Admin keys (`admin:` in the serving config)."""

    keys: dict[str, str] = Field(default_factory=dict)
    """Label -> sha256 hex digest of an admin key (`printf %s KEY | sha256sum`), never the key.
    Make the key of at least 32 random characters (`secrets.token_urlsafe(32)`): a digest does
    not tell its key's length, so only `LORAMUX_ADMIN_KEY` is checked for that at start."""

    @field_validator("keys")
    @classmethod
    def _check_hashes(cls, value: dict[str, str]) -> dict[str, str]:
        for label, digest in value.items():
            if not _SHA256_HEX.match(digest):
                raise ValueError(
                    f"admin key {label!r} must be the sha256 hex digest of the key (64 lower-case "
                    "hex digits), not the key itself"
                )
        return value


class AuthSettings(Strict):
    """API keys on the inference endpoints (`auth:` in the serving config)."""

    enabled: bool = True
    """Inference endpoints (`/v1/chat/completions`, `/v1/completions`, `/v1/route`,
    `/v1/models`, `/v1/feedback`) need an API key (`loramux keys create`) or the admin key. Turn
    off only for a local demo: then anyone who reaches the port may use every model, and the
    server logs a warning at start-up (env LORAMUX_AUTH=off|on). Admin endpoints always need the
    admin key."""
    rpm: int | None = Field(default=None, ge=1)
    """Requests per minute per API key, for keys that set none (`--rpm`); None: no limit."""
    tpm: int | None = Field(default=None, ge=1)
    """Prompt + completion tokens per minute per API key, for keys that set none (`--tpm`);
    None: no limit. Charged as an estimate when a request starts, settled to the real count when
    it ends."""
    limits_scope: Literal["gateway", "fleet"] = "gateway"
    """Where `rpm` / `tpm` hold: `gateway`, each gateway process alone (behind N gateways a key
    may use up to N times its limit); `fleet`, over every gateway of the PostgreSQL registry
    (`registry.store: postgres`): each gateway announces what each key used every 0.5 s, so a
    limit holds within what the gateways serve in that lag (docs/fleet.md)."""
    max_failures: int = Field(default=20, ge=1)
    """Failed authentications (401: a wrong or missing key, a wrong dashboard login) one client
    address may make within `failure_window_s`; past that, every request from that address gets
    429 with `Retry-After` until its oldest failure leaves the window. Other addresses are not
    affected. Behind a proxy every client shares the proxy's address: run uvicorn with
    `--forwarded-allow-ips` so the real address is used."""
    failure_window_s: float = Field(default=60.0, gt=0)
    """The window, in seconds, over which `max_failures` counts."""

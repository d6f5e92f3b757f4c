"""The registry's records: adapters, their immutable versions, traffic splits, audit, usage.

Plain frozen values that a `RegistryStore` reads and writes and the registry reasons about; no
I/O here. A change to the registry is one `Change`, written by the store in one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

Rating = Literal["up", "down"]
PINNED = ""
"""Experiment id recorded for requests that pinned a version (`hr@<version>`): in no experiment."""


class VersionStatus(StrEnum):
    STAGED = "staged"
    """Registered and loaded; reachable pinned (`name@version`), no share of the traffic."""
    ACTIVE = "active"
    """Has a share of the adapter's traffic."""
    RETIRED = "retired"
    """Unloaded and unreachable; its row and files stay for the record."""


@dataclass(frozen=True)
class VersionRecord:
    """One immutable version of an adapter (its id is the content hash of its files)."""

    adapter: str
    version: str
    rank: int
    target_modules: tuple[str, ...]
    base_model: str
    path: str
    """Folder of the files, relative to the registry's data dir."""
    size_bytes: int
    card: Mapping[str, Any]
    """Training metadata (`loramux-card.json`) when the folder had one."""
    status: VersionStatus
    created_at: float
    created_by: str


@dataclass(frozen=True)
class AdapterRecord:
    """An adapter (the alias clients name) with its metadata and traffic split."""

    name: str
    department: str = ""
    description: str = ""
    utterances: tuple[str, ...] = ()
    """Example requests the router may use as exemplars for this adapter."""
    traffic: Mapping[str, int] = field(default_factory=dict)
    """Version -> integer weight; weights sum to 100 (empty when no version has traffic)."""
    experiment_id: str | None = None
    """Changes whenever `traffic` changes; salts the sticky assignment of users."""
    main_version: str | None = None
    """The version challengers are compared against: the last promoted (or first) version."""
    revision: int = 0
    """Bumped by every change; a change written against an older revision is refused."""
    created_at: float = 0.0
    updated_at: float = 0.0
    pinned: bool = False
    """Its versions with traffic stay loaded in the engine, never evicted (an SLA)."""

    def public(self) -> dict[str, Any]:
        """The adapter's fields as JSON (for the audit log), without revision or timestamps."""
        return {
            "department": self.department,
            "description": self.description,
            "utterances": list(self.utterances),
            "traffic": dict(self.traffic),
            "experiment_id": self.experiment_id,
            "main_version": self.main_version,
            "pinned": self.pinned,
        }


@dataclass(frozen=True)
class AuditEntry:
    """One registry change: who (the admin key's label), what, when, before and after."""

    actor: str
    action: str
    adapter: str
    version: str | None
    before: Any
    after: Any
    at: float
    id: int | None = None


@dataclass(frozen=True)
class Change:
    """Everything one registry change writes, in one transaction."""

    adapter: AdapterRecord
    """The adapter's new state (inserted or replaced)."""
    expected_revision: int | None
    """The revision the change was computed from; None for a new adapter."""
    audit: AuditEntry
    new_version: VersionRecord | None = None
    statuses: Mapping[str, VersionStatus] = field(default_factory=dict)
    """Versions whose status changes."""


@dataclass(frozen=True)
class RegistryState:
    """Everything resolution needs, read in one go."""

    adapters: Mapping[str, AdapterRecord]
    versions: Mapping[str, tuple[VersionRecord, ...]]
    """Adapter name -> its versions, oldest first."""


@dataclass(frozen=True)
class RequestRecord:
    """Which version served a request, so later feedback can be attributed to it."""

    request_id: str
    """The server's id of the request (its `x-request-id` response header)."""
    adapter: str
    version: str
    experiment_id: str
    at: float
    key_id: str | None = None
    """The API key that made the request (`admin:<label>`, `anonymous`); only it (or the admin
    key) may rate the request. None for requests recorded before keys were kept."""


@dataclass(frozen=True)
class UsageDelta:
    """Counters to add for one (adapter, version, experiment)."""

    adapter: str
    version: str
    experiment_id: str
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class FeedbackRecord:
    """A user's rating of one response."""

    request_id: str
    adapter: str
    version: str
    experiment_id: str
    rating: Rating
    comment: str
    at: float


def training_summary(card: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a training card worth showing through the API (no paths of the trainer's
    machine): data hashes, LoRA and anti-forgetting settings, and headline metrics."""
    config = _mapping(card.get("config"))
    metrics = _mapping(card.get("metrics"))
    summary: dict[str, Any] = {}
    if "data_sha256" in card:
        summary["data_sha256"] = card["data_sha256"]
    for key in ("lora", "optim"):
        if isinstance(config.get(key), dict):
            summary[key] = config[key]
    options = {
        key: bool(config[key].get("enabled"))
        for key in ("replay", "distill", "l2", "early_stopping")
        if isinstance(config.get(key), dict)
    }
    if options:
        summary["anti_forgetting"] = options
    headline = {k: v for k, v in metrics.items() if not isinstance(v, list | dict)}
    if headline:
        summary["metrics"] = headline
    return summary


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}

"""Where the registry keeps its state: the `RegistryStore` protocol and the stores by name.

A store holds adapters, their immutable versions, traffic splits, the audit log, and the
request -> version records, usage counters and feedback that experiments are judged on. It
applies each registry change (`Change`) atomically and refuses one computed from a stale view
of the adapter. `STORES` maps `registry.store` to the function that opens a store from the data
dir and the registry settings: `sqlite` (`sqlite_store.SQLiteRegistryStore`, the data dir's
file) and `postgres` (`pg_store.PostgresRegistryStore`, `registry.database_url`, shared by a
fleet of gateways; psycopg is imported only when it is picked).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from loramux.adapters.records import (
    AuditEntry,
    Change,
    FeedbackRecord,
    Rating,
    RegistryState,
    RequestRecord,
    UsageDelta,
)
from loramux.adapters.sqlite_store import SQLiteRegistryStore
from loramux.config import RegistrySettings
from loramux.storage.sqlite import DB_FILE


class RegistryStore(Protocol):
    """Durable registry state. Implementations must apply each `Change` atomically."""

    def load(self) -> RegistryState:
        """Read every adapter with its versions and traffic."""
        ...

    def changed(self) -> bool:
        """True when another connection committed since this one last looked (cheap)."""
        ...

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Have `callback` called (from any thread) soon after another process commits a
        change, where the store can tell (PostgreSQL's NOTIFY); a store that cannot leaves
        its readers to poll `changed`."""
        ...

    def apply(self, change: Change) -> None:
        """Write one change in one transaction.

        Raises:
            AdapterConflictError: the adapter changed since `change.expected_revision`.
        """
        ...

    def delete_adapter(self, name: str, expected_revision: int, audit: AuditEntry) -> None:
        """Remove an adapter with its versions, traffic, request records, usage and feedback,
        and record `audit`, in one transaction (the audit log keeps its history).

        Raises:
            AdapterConflictError: the adapter changed since `expected_revision`.
        """
        ...

    def last_request_at(self, adapter: str) -> float | None:
        """When a request served by one of the adapter's versions was last recorded."""
        ...

    def audit_log(self, adapter: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """Newest entries first."""
        ...

    def add_audit(self, entry: AuditEntry) -> None:
        """Record an entry that goes with no state change (e.g. an automatic decision)."""
        ...

    def save_usage(self, requests: Sequence[RequestRecord], usage: Sequence[UsageDelta]) -> None:
        """Record request -> version rows and add usage counters, in one transaction."""
        ...

    def find_request(self, request_id: str) -> RequestRecord | None: ...

    def save_feedback(self, feedback: FeedbackRecord) -> None:
        """Insert or replace the rating of one request."""
        ...

    def ratings(self, request_ids: Sequence[str]) -> dict[str, Rating]:
        """Request id -> its rating, for the ids that were rated."""
        ...

    def feedback_counts(self, adapter: str, experiment_id: str) -> dict[str, tuple[int, int]]:
        """Version -> (thumbs up, thumbs down) within one experiment."""
        ...

    def usage(self, adapter: str, experiment_id: str) -> dict[str, UsageDelta]:
        """Version -> accumulated usage counters within one experiment."""
        ...

    def request_counts(self) -> dict[str, int]:
        """`name@version` -> requests served since registration, over every experiment (what
        pre-warming loads first)."""
        ...

    def prune_requests(self, before: float) -> int:
        """Forget request -> version rows older than `before`; returns how many."""
        ...

    def close(self) -> None: ...


def _open_sqlite(data_dir: Path, settings: RegistrySettings) -> RegistryStore:
    return SQLiteRegistryStore(data_dir / DB_FILE)


def _open_postgres(data_dir: Path, settings: RegistrySettings) -> RegistryStore:
    from loramux.adapters.pg_store import PostgresRegistryStore

    return PostgresRegistryStore(settings.dsn())


STORES: dict[str, Callable[[Path, RegistrySettings], RegistryStore]] = {
    "sqlite": _open_sqlite,
    "postgres": _open_postgres,
}
"""Registry store kinds by name (`registry.store`): each opens the store of a data dir and the
registry settings."""

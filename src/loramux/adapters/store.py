"""Where the registry keeps its state: the `RegistryStore` protocol and its SQLite implementation.

One SQLite file (`<data_dir>/registry.sqlite3`, WAL mode) holds adapters, their immutable
versions, traffic splits, the audit log, the request -> version records, usage counters and
feedback that experiments are judged on, and the API keys (read and written by
`loramux.keys.store`). The schema is versioned with `PRAGMA user_version` and migrated forward on
open. Every registry change (`Change`) is written in one transaction, and is
refused when the adapter changed since the change was computed (another process, or a race).
With WAL and `synchronous=NORMAL` a killed process loses nothing committed; a power cut may lose
the last commits, never part of one (a version folder without its rows is removed at start).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from loramux.adapters.records import (
    AdapterRecord,
    AuditEntry,
    Change,
    FeedbackRecord,
    RegistryState,
    RequestRecord,
    UsageDelta,
    VersionRecord,
    VersionStatus,
)
from loramux.errors import AdapterConflictError
from loramux.storage.schema import open_database
from loramux.storage.sqlite import DB_FILE, pragma, transaction


class RegistryStore(Protocol):
    """Durable registry state. Implementations must apply each `Change` atomically."""

    def load(self) -> RegistryState:
        """Read every adapter with its versions and traffic."""
        ...

    def changed(self) -> bool:
        """True when another connection committed since this one last looked (cheap)."""
        ...

    def apply(self, change: Change) -> None:
        """Write one change in one transaction.

        Raises:
            AdapterConflictError: the adapter changed since `change.expected_revision`.
        """
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

    def feedback_counts(self, adapter: str, experiment_id: str) -> dict[str, tuple[int, int]]:
        """Version -> (thumbs up, thumbs down) within one experiment."""
        ...

    def usage(self, adapter: str, experiment_id: str) -> dict[str, UsageDelta]:
        """Version -> accumulated usage counters within one experiment."""
        ...

    def prune_requests(self, before: float) -> int:
        """Forget request -> version rows older than `before`; returns how many."""
        ...

    def close(self) -> None: ...


class SQLiteRegistryStore:
    """`RegistryStore` in one SQLite file; safe to share between threads of one process."""

    def __init__(self, path: Path) -> None:
        """Open (creating and migrating) the registry database.

        Args:
            path: the SQLite file (`<data_dir>/registry.sqlite3`).

        Raises:
            ConfigError: the file is not a registry database or is from a newer loramux.
        """
        self.path = path
        self._lock = threading.RLock()
        self._db = open_database(path)
        self._data_version = pragma(self._db, "data_version")

    def _pragma(self, name: str) -> int:
        return pragma(self._db, name)

    def _transaction(self) -> AbstractContextManager[None]:
        return transaction(self._db)

    # -- registry state --------------------------------------------------------------------

    def load(self) -> RegistryState:
        with self._lock:
            self._data_version = self._pragma("data_version")
            traffic: dict[str, dict[str, int]] = {}
            for row in self._db.execute("SELECT adapter, version, weight FROM traffic"):
                traffic.setdefault(row["adapter"], {})[row["version"]] = int(row["weight"])
            adapters = {
                row["name"]: _adapter(row, traffic.get(row["name"], {}))
                for row in self._db.execute("SELECT * FROM adapters ORDER BY name")
            }
            versions: dict[str, list[VersionRecord]] = {name: [] for name in adapters}
            for row in self._db.execute("SELECT * FROM versions ORDER BY created_at, version"):
                versions.setdefault(row["adapter"], []).append(_version(row))
        return RegistryState(adapters, {k: tuple(v) for k, v in versions.items()})

    def changed(self) -> bool:
        with self._lock:
            return self._pragma("data_version") != self._data_version

    def apply(self, change: Change) -> None:
        a = change.adapter
        with self._lock, self._transaction():
            row = self._db.execute(
                "SELECT revision FROM adapters WHERE name = ?", (a.name,)
            ).fetchone()
            found = None if row is None else int(row["revision"])
            if found != change.expected_revision:
                raise AdapterConflictError(
                    f"adapter {a.name!r} was changed by someone else meanwhile; look at it again "
                    f"(GET /v1/adapters/{a.name}) and retry"
                )
            self._db.execute(
                """INSERT INTO adapters (name, department, description, utterances, experiment_id,
                       main_version, revision, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (name) DO UPDATE SET department = excluded.department,
                       description = excluded.description, utterances = excluded.utterances,
                       experiment_id = excluded.experiment_id,
                       main_version = excluded.main_version, revision = excluded.revision,
                       updated_at = excluded.updated_at""",
                (
                    a.name,
                    a.department,
                    a.description,
                    json.dumps(list(a.utterances)),
                    a.experiment_id,
                    a.main_version,
                    a.revision,
                    a.created_at,
                    a.updated_at,
                ),
            )
            if change.new_version is not None:
                self._insert_version(change.new_version)
            for version, status in change.statuses.items():
                self._db.execute(
                    "UPDATE versions SET status = ? WHERE adapter = ? AND version = ?",
                    (status.value, a.name, version),
                )
            self._db.execute("DELETE FROM traffic WHERE adapter = ?", (a.name,))
            self._db.executemany(
                "INSERT INTO traffic (adapter, version, weight) VALUES (?, ?, ?)",
                [(a.name, v, w) for v, w in a.traffic.items() if w > 0],
            )
            self._insert_audit(change.audit)

    def _insert_version(self, v: VersionRecord) -> None:
        self._db.execute(
            """INSERT INTO versions (adapter, version, rank, target_modules, base_model, path,
                   size_bytes, card, status, created_at, created_by)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                v.adapter,
                v.version,
                v.rank,
                json.dumps(list(v.target_modules)),
                v.base_model,
                v.path,
                v.size_bytes,
                json.dumps(dict(v.card), default=str),
                v.status.value,
                v.created_at,
                v.created_by,
            ),
        )

    def _insert_audit(self, e: AuditEntry) -> None:
        self._db.execute(
            """INSERT INTO audit (at, actor, action, adapter, version, before, after)
               VALUES (?, ?, ?, ?, ?, ?, ?)""",
            (
                e.at,
                e.actor,
                e.action,
                e.adapter,
                e.version,
                json.dumps(e.before, default=str),
                json.dumps(e.after, default=str),
            ),
        )

    def audit_log(self, adapter: str | None = None, limit: int = 100) -> list[AuditEntry]:
        where, args = ("WHERE adapter = ?", [adapter]) if adapter else ("", [])
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM audit {where} ORDER BY id DESC LIMIT ?", (*args, limit)
            ).fetchall()
        return [
            AuditEntry(
                actor=r["actor"],
                action=r["action"],
                adapter=r["adapter"],
                version=r["version"],
                before=json.loads(r["before"]) if r["before"] else None,
                after=json.loads(r["after"]) if r["after"] else None,
                at=r["at"],
                id=r["id"],
            )
            for r in rows
        ]

    def add_audit(self, entry: AuditEntry) -> None:
        with self._lock, self._transaction():
            self._insert_audit(entry)

    # -- experiments -----------------------------------------------------------------------

    def save_usage(self, requests: Sequence[RequestRecord], usage: Sequence[UsageDelta]) -> None:
        with self._lock, self._transaction():
            self._db.executemany(
                """INSERT OR REPLACE INTO requests (request_id, adapter, version, experiment_id, at)
                   VALUES (?, ?, ?, ?, ?)""",
                [(r.request_id, r.adapter, r.version, r.experiment_id, r.at) for r in requests],
            )
            self._db.executemany(
                """INSERT INTO usage (adapter, version, experiment_id, requests, errors,
                       prompt_tokens, completion_tokens) VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (adapter, version, experiment_id) DO UPDATE SET
                       requests = requests + excluded.requests,
                       errors = errors + excluded.errors,
                       prompt_tokens = prompt_tokens + excluded.prompt_tokens,
                       completion_tokens = completion_tokens + excluded.completion_tokens""",
                [
                    (
                        u.adapter,
                        u.version,
                        u.experiment_id,
                        u.requests,
                        u.errors,
                        u.prompt_tokens,
                        u.completion_tokens,
                    )
                    for u in usage
                ],
            )

    def find_request(self, request_id: str) -> RequestRecord | None:
        with self._lock:
            r = self._db.execute(
                "SELECT * FROM requests WHERE request_id = ?", (request_id,)
            ).fetchone()
        if r is None:
            return None
        return RequestRecord(
            r["request_id"], r["adapter"], r["version"], r["experiment_id"], r["at"]
        )

    def save_feedback(self, feedback: FeedbackRecord) -> None:
        f = feedback
        with self._lock, self._transaction():
            self._db.execute(
                """INSERT OR REPLACE INTO feedback (request_id, adapter, version, experiment_id,
                       rating, comment, at) VALUES (?, ?, ?, ?, ?, ?, ?)""",
                (f.request_id, f.adapter, f.version, f.experiment_id, f.rating, f.comment, f.at),
            )

    def feedback_counts(self, adapter: str, experiment_id: str) -> dict[str, tuple[int, int]]:
        counts: dict[str, list[int]] = {}
        with self._lock:
            rows = self._db.execute(
                """SELECT version, rating, COUNT(*) AS n FROM feedback
                   WHERE adapter = ? AND experiment_id = ? GROUP BY version, rating""",
                (adapter, experiment_id),
            ).fetchall()
        for r in rows:
            counts.setdefault(r["version"], [0, 0])[0 if r["rating"] == "up" else 1] = int(r["n"])
        return {v: (c[0], c[1]) for v, c in counts.items()}

    def usage(self, adapter: str, experiment_id: str) -> dict[str, UsageDelta]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM usage WHERE adapter = ? AND experiment_id = ?",
                (adapter, experiment_id),
            ).fetchall()
        return {
            r["version"]: UsageDelta(
                adapter,
                r["version"],
                experiment_id,
                r["requests"],
                r["errors"],
                r["prompt_tokens"],
                r["completion_tokens"],
            )
            for r in rows
        }

    def prune_requests(self, before: float) -> int:
        with self._lock, self._transaction():
            return self._db.execute("DELETE FROM requests WHERE at < ?", (before,)).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _adapter(row: sqlite3.Row, traffic: Mapping[str, int]) -> AdapterRecord:
    return AdapterRecord(
        name=row["name"],
        department=row["department"],
        description=row["description"],
        utterances=tuple(json.loads(row["utterances"])),
        traffic=dict(sorted(traffic.items())),
        experiment_id=row["experiment_id"],
        main_version=row["main_version"],
        revision=int(row["revision"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _version(row: sqlite3.Row) -> VersionRecord:
    card: Any = json.loads(row["card"])
    return VersionRecord(
        adapter=row["adapter"],
        version=row["version"],
        rank=int(row["rank"]),
        target_modules=tuple(json.loads(row["target_modules"])),
        base_model=row["base_model"],
        path=row["path"],
        size_bytes=int(row["size_bytes"]),
        card=card if isinstance(card, dict) else {},
        status=VersionStatus(row["status"]),
        created_at=row["created_at"],
        created_by=row["created_by"],
    )


def _open_sqlite(data_dir: Path) -> RegistryStore:
    return SQLiteRegistryStore(data_dir / DB_FILE)


STORES: dict[str, Callable[[Path], RegistryStore]] = {"sqlite": _open_sqlite}
"""Registry store kinds by name (`registry.store`): each opens the store of a data dir."""

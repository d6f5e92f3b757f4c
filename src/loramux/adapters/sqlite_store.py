"""`SQLiteRegistryStore`: the `RegistryStore` that `registry.store: sqlite` names.

Its tables live in the registry database (`<data_dir>/registry.sqlite3`, opened and migrated by
`loramux.storage.schema`) beside the key store's. Every registry change (`Change`) is written in
one transaction, and is refused when the adapter changed since the change was computed (another
process, or a race). With WAL and `synchronous=NORMAL` a killed process loses nothing committed;
a power cut may lose the last commits, never part of one (a version folder without its rows is
removed at start).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from loramux.adapters.records import (
    AuditEntry,
    Change,
    FeedbackRecord,
    Rating,
    RegistryState,
    RequestRecord,
    UsageDelta,
    VersionRecord,
)
from loramux.adapters.rows import (
    adapter_params,
    adapter_record,
    audit_entry,
    audit_params,
    request_record,
    usage_delta,
    usage_params,
    version_params,
    version_record,
)
from loramux.errors import AdapterConflictError
from loramux.storage.schema import open_database
from loramux.storage.sqlite import pragma, transaction


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
                row["name"]: adapter_record(row, traffic.get(row["name"], {}))
                for row in self._db.execute("SELECT * FROM adapters ORDER BY name")
            }
            versions: dict[str, list[VersionRecord]] = {name: [] for name in adapters}
            for row in self._db.execute("SELECT * FROM versions ORDER BY created_at, version"):
                versions.setdefault(row["adapter"], []).append(version_record(row))
        return RegistryState(adapters, {k: tuple(v) for k, v in versions.items()})

    def changed(self) -> bool:
        with self._lock:
            return self._pragma("data_version") != self._data_version

    def subscribe(self, callback: Callable[[], None]) -> None:
        """SQLite cannot announce commits: readers poll `changed` (a cheap pragma)."""

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
                       main_version, revision, created_at, updated_at, pinned)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (name) DO UPDATE SET department = excluded.department,
                       description = excluded.description, utterances = excluded.utterances,
                       experiment_id = excluded.experiment_id,
                       main_version = excluded.main_version, revision = excluded.revision,
                       updated_at = excluded.updated_at, pinned = excluded.pinned""",
                adapter_params(a),
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

    def delete_adapter(self, name: str, expected_revision: int, audit: AuditEntry) -> None:
        with self._lock, self._transaction():
            row = self._db.execute(
                "SELECT revision FROM adapters WHERE name = ?", (name,)
            ).fetchone()
            if row is None or int(row["revision"]) != expected_revision:
                raise AdapterConflictError(
                    f"adapter {name!r} was changed by someone else meanwhile; look at it again "
                    f"(GET /v1/adapters/{name}) and retry"
                )
            for table in ("traffic", "versions", "requests", "usage", "feedback"):
                self._db.execute(f"DELETE FROM {table} WHERE adapter = ?", (name,))
            self._db.execute("DELETE FROM adapters WHERE name = ?", (name,))
            self._insert_audit(audit)

    def last_request_at(self, adapter: str) -> float | None:
        with self._lock:
            row = self._db.execute(
                "SELECT MAX(at) AS at FROM requests WHERE adapter = ?", (adapter,)
            ).fetchone()
        return None if row is None or row["at"] is None else float(row["at"])

    def _insert_version(self, v: VersionRecord) -> None:
        self._db.execute(
            """INSERT INTO versions (adapter, version, rank, target_modules, base_model, path,
                   size_bytes, card, status, created_at, created_by)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            version_params(v),
        )

    def _insert_audit(self, e: AuditEntry) -> None:
        self._db.execute(
            """INSERT INTO audit (at, actor, action, adapter, version, before, after)
               VALUES (?, ?, ?, ?, ?, ?, ?)""",
            audit_params(e),
        )

    def audit_log(self, adapter: str | None = None, limit: int = 100) -> list[AuditEntry]:
        where, args = ("WHERE adapter = ?", [adapter]) if adapter else ("", [])
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM audit {where} ORDER BY id DESC LIMIT ?", (*args, limit)
            ).fetchall()
        return [audit_entry(r) for r in rows]

    def add_audit(self, entry: AuditEntry) -> None:
        with self._lock, self._transaction():
            self._insert_audit(entry)

    # -- experiments -----------------------------------------------------------------------

    def save_usage(self, requests: Sequence[RequestRecord], usage: Sequence[UsageDelta]) -> None:
        with self._lock, self._transaction():
            self._db.executemany(
                """INSERT OR REPLACE INTO requests (request_id, adapter, version, experiment_id, at,
                       key_id) VALUES (?, ?, ?, ?, ?, ?)""",
                [
                    (r.request_id, r.adapter, r.version, r.experiment_id, r.at, r.key_id)
                    for r in requests
                ],
            )
            self._db.executemany(
                """INSERT INTO usage (adapter, version, experiment_id, requests, errors,
                       prompt_tokens, completion_tokens) VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (adapter, version, experiment_id) DO UPDATE SET
                       requests = requests + excluded.requests,
                       errors = errors + excluded.errors,
                       prompt_tokens = prompt_tokens + excluded.prompt_tokens,
                       completion_tokens = completion_tokens + excluded.completion_tokens""",
                [usage_params(u) for u in usage],
            )

    def find_request(self, request_id: str) -> RequestRecord | None:
        with self._lock:
            r = self._db.execute(
                "SELECT * FROM requests WHERE request_id = ?", (request_id,)
            ).fetchone()
        return None if r is None else request_record(r)

    def save_feedback(self, feedback: FeedbackRecord) -> None:
        f = feedback
        with self._lock, self._transaction():
            self._db.execute(
                """INSERT OR REPLACE INTO feedback (request_id, adapter, version, experiment_id,
                       rating, comment, at) VALUES (?, ?, ?, ?, ?, ?, ?)""",
                (f.request_id, f.adapter, f.version, f.experiment_id, f.rating, f.comment, f.at),
            )

    def ratings(self, request_ids: Sequence[str]) -> dict[str, Rating]:
        found: dict[str, Rating] = {}
        ids = list(request_ids)
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT request_id, rating FROM feedback WHERE request_id IN ({marks})",
                    chunk,
                ).fetchall()
                found.update({r["request_id"]: r["rating"] for r in rows})
        return found

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
        return {r["version"]: usage_delta(adapter, experiment_id, r) for r in rows}

    def request_counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT adapter, version, SUM(requests) AS n FROM usage GROUP BY adapter, version"
            ).fetchall()
        return {f"{r['adapter']}@{r['version']}": int(r["n"]) for r in rows}

    def prune_requests(self, before: float) -> int:
        with self._lock, self._transaction():
            return self._db.execute("DELETE FROM requests WHERE at < ?", (before,)).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()

"""`PostgresRegistryStore`: the `RegistryStore` that `registry.store: postgres` names.

The same tables and rows as the SQLite store (`rows` converts both), in the database
`registry.database_url` names, shared by every gateway of a fleet. Each change is one
transaction that first locks the `registry_changes` row (registry writers take turns, as with
SQLite's BEGIN IMMEDIATE), then checks the adapter's revision: of two gateways changing one
adapter at once, the second sees the first's commit and gets `AdapterConflictError` (409).
The transaction bumps the change counter and sends `NOTIFY loramux_registry`, delivered at
commit: `subscribe` wakes the other gateways' watch loops with it, and `changed()` compares the
counter (the bounded poll that catches what a lost notification missed).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

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
from loramux.storage.postgres import CHANGES_CHANNEL, Conn, Database, Listener


def _conflict(name: str) -> AdapterConflictError:
    return AdapterConflictError(
        f"adapter {name!r} was changed by someone else meanwhile (another gateway?); look at it "
        f"again (GET /v1/adapters/{name}) and retry"
    )


class PostgresRegistryStore:
    """`RegistryStore` in PostgreSQL; safe to share between threads of one process."""

    def __init__(self, dsn: str) -> None:
        """Connect, migrating the database to the newest schema.

        Raises:
            ConfigError: a malformed DSN or a schema newer than this loramux knows.
            StoreUnavailableError: the server cannot be reached.
        """
        self._db = Database(dsn)
        self._seen = -1
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    # -- registry state --------------------------------------------------------------------

    def load(self) -> RegistryState:
        with self._db.transaction(snapshot=True) as c:
            seen = _counter(c)
            traffic: dict[str, dict[str, int]] = {}
            for row in c.execute("SELECT adapter, version, weight FROM traffic"):
                traffic.setdefault(row["adapter"], {})[row["version"]] = int(row["weight"])
            adapters = {
                row["name"]: adapter_record(row, traffic.get(row["name"], {}))
                for row in c.execute("SELECT * FROM adapters ORDER BY name")
            }
            versions: dict[str, list[VersionRecord]] = {name: [] for name in adapters}
            for row in c.execute("SELECT * FROM versions ORDER BY created_at, version"):
                versions.setdefault(row["adapter"], []).append(version_record(row))
        self._seen = seen
        return RegistryState(adapters, {k: tuple(v) for k, v in versions.items()})

    def changed(self) -> bool:
        with self._db.reading() as c:
            return _counter(c) != self._seen

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call `callback` (from another thread) whenever a registry change may have been
        committed by any gateway (LISTEN/NOTIFY), and after a lost listen connection is back."""
        with self._lock:
            self._listeners.append(Listener(self._db.dsn, CHANGES_CHANNEL, lambda _: callback()))

    def _begin_change(self, c: Conn, name: str, expected_revision: int | None) -> None:
        """Take the registry write lock, then refuse a change computed from a stale view."""
        c.execute("SELECT n FROM registry_changes WHERE id = 1 FOR UPDATE")
        row = c.execute("SELECT revision FROM adapters WHERE name = %s", (name,)).fetchone()
        found = None if row is None else int(row["revision"])
        if found != expected_revision:
            raise _conflict(name)

    def _end_change(self, c: Conn, name: str, audit: AuditEntry) -> None:
        self._insert_audit(c, audit)
        c.execute("UPDATE registry_changes SET n = n + 1 WHERE id = 1")
        c.execute("SELECT pg_notify(%s, %s)", (CHANGES_CHANNEL, name))

    def apply(self, change: Change) -> None:
        a = change.adapter
        with self._db.transaction() as c:
            self._begin_change(c, a.name, change.expected_revision)
            c.execute(
                """INSERT INTO adapters (name, department, description, utterances, experiment_id,
                       main_version, revision, created_at, updated_at, pinned)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (name) DO UPDATE SET department = EXCLUDED.department,
                       description = EXCLUDED.description, utterances = EXCLUDED.utterances,
                       experiment_id = EXCLUDED.experiment_id,
                       main_version = EXCLUDED.main_version, revision = EXCLUDED.revision,
                       updated_at = EXCLUDED.updated_at, pinned = EXCLUDED.pinned""",
                adapter_params(a),
            )
            if change.new_version is not None:
                c.execute(
                    """INSERT INTO versions (adapter, version, rank, target_modules, base_model,
                           path, size_bytes, card, status, created_at, created_by)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                    version_params(change.new_version),
                )
            for version, status in change.statuses.items():
                c.execute(
                    "UPDATE versions SET status = %s WHERE adapter = %s AND version = %s",
                    (status.value, a.name, version),
                )
            c.execute("DELETE FROM traffic WHERE adapter = %s", (a.name,))
            with c.cursor() as cur:
                cur.executemany(
                    "INSERT INTO traffic (adapter, version, weight) VALUES (%s, %s, %s)",
                    [(a.name, v, w) for v, w in a.traffic.items() if w > 0],
                )
            self._end_change(c, a.name, change.audit)

    def delete_adapter(self, name: str, expected_revision: int, audit: AuditEntry) -> None:
        with self._db.transaction() as c:
            self._begin_change(c, name, expected_revision)
            for table in ("traffic", "versions", "requests", "usage", "feedback"):
                c.execute(f"DELETE FROM {table} WHERE adapter = %s", (name,))
            c.execute("DELETE FROM adapters WHERE name = %s", (name,))
            self._end_change(c, name, audit)

    def last_request_at(self, adapter: str) -> float | None:
        with self._db.reading() as c:
            row = c.execute(
                "SELECT MAX(at) AS at FROM requests WHERE adapter = %s", (adapter,)
            ).fetchone()
        return None if row is None or row["at"] is None else float(row["at"])

    @staticmethod
    def _insert_audit(c: Conn, e: AuditEntry) -> None:
        c.execute(
            """INSERT INTO audit (at, actor, action, adapter, version, before, after)
               VALUES (%s, %s, %s, %s, %s, %s, %s)""",
            audit_params(e),
        )

    def audit_log(self, adapter: str | None = None, limit: int = 100) -> list[AuditEntry]:
        where, args = ("WHERE adapter = %s", [adapter]) if adapter else ("", [])
        with self._db.reading() as c:
            rows = c.execute(
                f"SELECT * FROM audit {where} ORDER BY id DESC LIMIT %s", (*args, limit)
            ).fetchall()
        return [audit_entry(r) for r in rows]

    def add_audit(self, entry: AuditEntry) -> None:
        with self._db.transaction() as c:
            self._insert_audit(c, entry)

    # -- experiments -----------------------------------------------------------------------

    def save_usage(self, requests: Sequence[RequestRecord], usage: Sequence[UsageDelta]) -> None:
        with self._db.transaction() as c, c.cursor() as cur:
            cur.executemany(
                """INSERT INTO requests (request_id, adapter, version, experiment_id, at, key_id)
                   VALUES (%s, %s, %s, %s, %s, %s)
                   ON CONFLICT (request_id) DO UPDATE SET adapter = EXCLUDED.adapter,
                       version = EXCLUDED.version, experiment_id = EXCLUDED.experiment_id,
                       at = EXCLUDED.at, key_id = EXCLUDED.key_id""",
                [
                    (r.request_id, r.adapter, r.version, r.experiment_id, r.at, r.key_id)
                    for r in requests
                ],
            )
            cur.executemany(
                """INSERT INTO usage (adapter, version, experiment_id, requests, errors,
                       prompt_tokens, completion_tokens) VALUES (%s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (adapter, version, experiment_id) DO UPDATE SET
                       requests = usage.requests + EXCLUDED.requests,
                       errors = usage.errors + EXCLUDED.errors,
                       prompt_tokens = usage.prompt_tokens + EXCLUDED.prompt_tokens,
                       completion_tokens = usage.completion_tokens + EXCLUDED.completion_tokens""",
                [usage_params(u) for u in usage],
            )

    def find_request(self, request_id: str) -> RequestRecord | None:
        with self._db.reading() as c:
            r = c.execute("SELECT * FROM requests WHERE request_id = %s", (request_id,)).fetchone()
        return None if r is None else request_record(r)

    def save_feedback(self, feedback: FeedbackRecord) -> None:
        f = feedback
        with self._db.transaction() as c:
            c.execute(
                """INSERT INTO feedback (request_id, adapter, version, experiment_id, rating,
                       comment, at) VALUES (%s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (request_id) DO UPDATE SET adapter = EXCLUDED.adapter,
                       version = EXCLUDED.version, experiment_id = EXCLUDED.experiment_id,
                       rating = EXCLUDED.rating, comment = EXCLUDED.comment, at = EXCLUDED.at""",
                (f.request_id, f.adapter, f.version, f.experiment_id, f.rating, f.comment, f.at),
            )

    def ratings(self, request_ids: Sequence[str]) -> dict[str, Rating]:
        with self._db.reading() as c:
            rows = c.execute(
                "SELECT request_id, rating FROM feedback WHERE request_id = ANY(%s)",
                (list(request_ids),),
            ).fetchall()
        return {r["request_id"]: r["rating"] for r in rows}

    def feedback_counts(self, adapter: str, experiment_id: str) -> dict[str, tuple[int, int]]:
        counts: dict[str, list[int]] = {}
        with self._db.reading() as c:
            rows = c.execute(
                """SELECT version, rating, COUNT(*) AS n FROM feedback
                   WHERE adapter = %s AND experiment_id = %s GROUP BY version, rating""",
                (adapter, experiment_id),
            ).fetchall()
        for r in rows:
            counts.setdefault(r["version"], [0, 0])[0 if r["rating"] == "up" else 1] = int(r["n"])
        return {v: (c[0], c[1]) for v, c in counts.items()}

    def usage(self, adapter: str, experiment_id: str) -> dict[str, UsageDelta]:
        with self._db.reading() as c:
            rows = c.execute(
                "SELECT * FROM usage WHERE adapter = %s AND experiment_id = %s",
                (adapter, experiment_id),
            ).fetchall()
        return {r["version"]: usage_delta(adapter, experiment_id, r) for r in rows}

    def request_counts(self) -> dict[str, int]:
        with self._db.reading() as c:
            rows = c.execute(
                "SELECT adapter, version, SUM(requests) AS n FROM usage GROUP BY adapter, version"
            ).fetchall()
        return {f"{r['adapter']}@{r['version']}": int(r["n"]) for r in rows}

    def prune_requests(self, before: float) -> int:
        with self._db.transaction() as c:
            return c.execute("DELETE FROM requests WHERE at < %s", (before,)).rowcount

    def close(self) -> None:
        with self._lock:
            listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener.close()
        self._db.close()


def _counter(c: Conn) -> int:
    row = c.execute("SELECT n FROM registry_changes WHERE id = 1").fetchone()
    return -1 if row is None else int(row["n"])

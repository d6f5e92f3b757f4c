"""`PostgresKeyStore`: API keys in the fleet's PostgreSQL database (`registry.store: postgres`).

The same `api_keys` table as SQLite's (`pg_schema.PG_MIGRATIONS`), shared by every gateway.
Each change is one transaction with its audit entry; a revocation or rotation locks the key's
row first (`SELECT ... FOR UPDATE`), so two gateways revoking at once write one audit entry.

A lookup (every request) is answered from a small in-process cache of the keys found in the
last `CACHE_TTL_S`, so requests do not wait on a database round trip each. Every key change
sends `NOTIFY loramux_keys` in its transaction, and each gateway's listener empties its cache on
it: a key revoked (or rotated) on one gateway is refused by the others within milliseconds, and
within `CACHE_TTL_S` even when a notification is lost. Unknown secrets are never cached (each
is looked up; failed logins are throttled per client address).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

from loramux.errors import InvalidRequestError, KeyNotFoundError
from loramux.keys.records import ApiKey
from loramux.keys.store import audit_row, key_from_row
from loramux.storage.postgres import Conn, Database, Listener

KEYS_CHANNEL = "loramux_keys"
"""The NOTIFY channel every key change is announced on (the payload is the key's id)."""
CACHE_TTL_S = 1.0
"""The longest a found key is answered from memory without asking the database again."""
CACHE_MAX = 10_000
"""Keys cached at most (the cache is emptied when full)."""


class PostgresKeyStore:
    """`KeyStore` in PostgreSQL; safe to share between threads of one process."""

    def __init__(self, dsn: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Connect, migrating the database to the newest schema.

        Raises:
            ConfigError: a malformed DSN or a schema newer than this loramux knows.
            StoreUnavailableError: the server cannot be reached.
        """
        self._db = Database(dsn)
        self._clock = clock
        self._cache: dict[str, tuple[ApiKey, float]] = {}
        self._cache_lock = threading.Lock()
        self._listener: Listener | None = None

    def _forget(self, _payload: str = "") -> None:
        with self._cache_lock:
            self._cache.clear()

    def _listen(self) -> None:
        with self._cache_lock:
            if self._listener is None:
                self._listener = Listener(self._db.dsn, KEYS_CHANNEL, self._forget)

    def insert(self, key: ApiKey, digest: str) -> None:
        with self._db.transaction() as c:
            c.execute(
                """INSERT INTO api_keys (id, prefix, hash, department, label, adapters, base, rag,
                       rpm, tpm, created_at, created_by, revoked_at, revoked_by, expires_at,
                       weight)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, NULL, NULL, %s, %s)""",
                (
                    key.id,
                    key.prefix,
                    digest,
                    key.department,
                    key.label,
                    json.dumps(list(key.adapters)),
                    int(key.base),
                    int(key.rag),
                    key.rpm,
                    key.tpm,
                    key.created_at,
                    key.created_by,
                    key.expires_at,
                    key.weight,
                ),
            )
            _audit(c, key.created_at, key.created_by, "key.create", key.id, None, key)

    def find(self, digest: str) -> ApiKey | None:
        self._listen()
        now = self._clock()
        with self._cache_lock:
            hit = self._cache.get(digest)
        if hit is not None and now - hit[1] < CACHE_TTL_S:
            return hit[0]
        with self._db.reading() as c:
            row = c.execute("SELECT * FROM api_keys WHERE hash = %s", (digest,)).fetchone()
        if row is None:
            return None
        key = key_from_row(row)
        with self._cache_lock:
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            self._cache[digest] = (key, now)
        return key

    def get(self, key_id: str) -> ApiKey:
        with self._db.reading() as c:
            return _get(c, key_id)

    def list_keys(self) -> list[ApiKey]:
        with self._db.reading() as c:
            rows = c.execute("SELECT * FROM api_keys ORDER BY created_at, id").fetchall()
        return [key_from_row(row) for row in rows]

    def revoke(self, key_id: str, *, at: float, actor: str) -> ApiKey:
        with self._db.transaction() as c:
            before = _get(c, key_id, lock=True)
            if before.revoked:
                return before
            c.execute(
                "UPDATE api_keys SET revoked_at = %s, revoked_by = %s WHERE id = %s",
                (at, actor, key_id),
            )
            after = _get(c, key_id)
            _audit(c, at, actor, "key.revoke", key_id, before, after)
        self._forget()
        return after

    def rotate(self, key_id: str, *, prefix: str, digest: str, at: float, actor: str) -> ApiKey:
        with self._db.transaction() as c:
            before = _get(c, key_id, lock=True)
            if before.revoked:
                raise InvalidRequestError(
                    f"API key {key_id} is revoked; make a new one (`loramux keys create`)",
                    param="id",
                )
            c.execute(
                "UPDATE api_keys SET prefix = %s, hash = %s, rotated_at = %s WHERE id = %s",
                (prefix, digest, at, key_id),
            )
            after = _get(c, key_id)
            _audit(c, at, actor, "key.rotate", key_id, before, after)
        self._forget()
        return after

    def count_active(self) -> int:
        with self._db.reading() as c:
            row = c.execute(
                "SELECT COUNT(*) AS n FROM api_keys WHERE revoked_at IS NULL"
            ).fetchone()
        return 0 if row is None else int(row["n"])

    def close(self) -> None:
        with self._cache_lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self._db.close()


def _get(c: Conn, key_id: str, *, lock: bool = False) -> ApiKey:
    """Raises: KeyNotFoundError: no key has this id."""
    sql = "SELECT * FROM api_keys WHERE id = %s" + (" FOR UPDATE" if lock else "")
    row = c.execute(sql, (key_id,)).fetchone()
    if row is None:
        raise KeyNotFoundError(
            f"no API key has the id {key_id!r}; `loramux keys list` (or GET /v1/keys) shows the "
            "ids",
            param="id",
        )
    return key_from_row(row)


def _audit(
    c: Conn, at: float, actor: str, action: str, key_id: str, before: ApiKey | None, after: ApiKey
) -> None:
    c.execute(
        """INSERT INTO audit (at, actor, action, adapter, version, before, after)
           VALUES (%s, %s, %s, %s, NULL, %s, %s)""",
        audit_row(at, actor, action, key_id, before, after),
    )
    c.execute("SELECT pg_notify(%s, %s)", (KEYS_CHANNEL, key_id))

"""Where API keys live: the `api_keys` table of the registry's SQLite file.

`SQLiteKeyStore` is here; `PostgresKeyStore` (`keys.pg_store`) keeps the same table in the
fleet's PostgreSQL database. The table is created by the database's migrations
(`loramux.storage.schema.MIGRATIONS`, `pg_schema.PG_MIGRATIONS`); opening
a `SQLiteKeyStore` runs them first, so the CLI can create keys in a fresh data dir. Each change
(a new key, a rotation, a revocation) is written in one transaction together with its audit
entry in the registry's audit log, whose `adapter` column then names the key (`key:<id>`).
Lookups read the database every time (an indexed read of a few microseconds), so a key revoked
(or rotated) by another process stops working on the next request.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from loramux.config import RegistrySettings
from loramux.errors import InvalidRequestError, KeyNotFoundError
from loramux.keys.records import ApiKey
from loramux.storage.schema import open_database
from loramux.storage.sqlite import DB_FILE, transaction

AUDIT_SUBJECT = "key:{id}"
"""What the audit log's `adapter` column holds for a key change (`:` never occurs in adapter
names, so key entries cannot be mistaken for an adapter's)."""


class KeyStore(Protocol):
    """Durable API keys. Implementations write each change and its audit entry atomically."""

    def insert(self, key: ApiKey, digest: str) -> None:
        """Store a new key under the sha256 hex `digest` of its secret."""
        ...

    def find(self, digest: str) -> ApiKey | None:
        """The key whose secret hashes to `digest` (revoked keys too)."""
        ...

    def get(self, key_id: str) -> ApiKey:
        """Raises: KeyNotFoundError: no key has this id."""
        ...

    def list_keys(self) -> list[ApiKey]:
        """Every key, oldest first."""
        ...

    def revoke(self, key_id: str, *, at: float, actor: str) -> ApiKey:
        """Mark a key revoked (a second revocation changes nothing).

        Raises:
            KeyNotFoundError: no key has this id.
        """
        ...

    def rotate(self, key_id: str, *, prefix: str, digest: str, at: float, actor: str) -> ApiKey:
        """Replace a key's secret (its sha256 and shown prefix); the id and access stay, and
        the old secret stops working at once.

        Raises:
            KeyNotFoundError: no key has this id.
            InvalidRequestError: the key is revoked.
        """
        ...

    def count_active(self) -> int: ...

    def close(self) -> None: ...


class SQLiteKeyStore:
    """`KeyStore` in the registry's SQLite file; safe to share between threads of one process."""

    def __init__(self, path: Path) -> None:
        """Open the registry database (creating and migrating it when needed).

        Args:
            path: the SQLite file (`<data_dir>/registry.sqlite3`).

        Raises:
            ConfigError: the file is not a registry database or is from a newer loramux.
        """
        self.path = path
        self._lock = threading.RLock()
        self._db = open_database(path)

    @classmethod
    def open(cls, data_dir: Path, settings: RegistrySettings | None = None) -> SQLiteKeyStore:
        """The key store of a data dir (`<data_dir>/registry.sqlite3`)."""
        return cls(data_dir.expanduser() / DB_FILE)

    def _transaction(self) -> AbstractContextManager[None]:
        return transaction(self._db)

    def insert(self, key: ApiKey, digest: str) -> None:
        with self._lock, self._transaction():
            self._db.execute(
                """INSERT INTO api_keys (id, prefix, hash, department, label, adapters, base, rag,
                       rpm, tpm, created_at, created_by, revoked_at, revoked_by, expires_at,
                       weight)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?)""",
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
            self._audit(key.created_at, key.created_by, "key.create", key.id, None, key)

    def find(self, digest: str) -> ApiKey | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM api_keys WHERE hash = ?", (digest,)).fetchone()
        return None if row is None else key_from_row(row)

    def get(self, key_id: str) -> ApiKey:
        with self._lock:
            row = self._db.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        if row is None:
            raise KeyNotFoundError(
                f"no API key has the id {key_id!r}; `loramux keys list` (or GET /v1/keys) shows "
                "the ids",
                param="id",
            )
        return key_from_row(row)

    def list_keys(self) -> list[ApiKey]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM api_keys ORDER BY created_at, id").fetchall()
        return [key_from_row(row) for row in rows]

    def revoke(self, key_id: str, *, at: float, actor: str) -> ApiKey:
        with self._lock, self._transaction():
            before = self.get(key_id)
            if before.revoked:
                return before
            self._db.execute(
                "UPDATE api_keys SET revoked_at = ?, revoked_by = ? WHERE id = ?",
                (at, actor, key_id),
            )
            after = self.get(key_id)
            self._audit(at, actor, "key.revoke", key_id, before, after)
        return after

    def rotate(self, key_id: str, *, prefix: str, digest: str, at: float, actor: str) -> ApiKey:
        with self._lock, self._transaction():
            before = self.get(key_id)
            if before.revoked:
                raise InvalidRequestError(
                    f"API key {key_id} is revoked; make a new one (`loramux keys create`)",
                    param="id",
                )
            self._db.execute(
                "UPDATE api_keys SET prefix = ?, hash = ?, rotated_at = ? WHERE id = ?",
                (prefix, digest, at, key_id),
            )
            after = self.get(key_id)
            self._audit(at, actor, "key.rotate", key_id, before, after)
        return after

    def count_active(self) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL"
            ).fetchone()
        return int(row[0])

    def _audit(
        self, at: float, actor: str, action: str, key_id: str, before: ApiKey | None, after: ApiKey
    ) -> None:
        self._db.execute(
            """INSERT INTO audit (at, actor, action, adapter, version, before, after)
               VALUES (?, ?, ?, ?, NULL, ?, ?)""",
            audit_row(at, actor, action, key_id, before, after),
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()


def key_from_row(row: sqlite3.Row | Mapping[str, Any]) -> ApiKey:
    """An `api_keys` row (SQLite's or PostgreSQL's) as a record."""
    return ApiKey(
        id=row["id"],
        prefix=row["prefix"],
        department=row["department"],
        label=row["label"],
        adapters=tuple(json.loads(row["adapters"])),
        base=bool(row["base"]),
        rag=bool(row["rag"]),
        rpm=row["rpm"],
        tpm=row["tpm"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        revoked_at=row["revoked_at"],
        revoked_by=row["revoked_by"],
        expires_at=row["expires_at"],
        rotated_at=row["rotated_at"],
        weight=float(row["weight"]),
    )


def _open_postgres(data_dir: Path, settings: RegistrySettings | None = None) -> KeyStore:
    from loramux.keys.pg_store import PostgresKeyStore

    return PostgresKeyStore((settings or RegistrySettings()).dsn())


KEY_STORES: dict[str, Callable[[Path, RegistrySettings], KeyStore]] = {
    "sqlite": SQLiteKeyStore.open,
    "postgres": _open_postgres,
}
"""Key store kinds by name (the registry's `registry.store`): each opens the store of a data dir
(`sqlite`) or of `registry.database_url` (`postgres`, psycopg imported only then)."""


def audit_row(
    at: float, actor: str, action: str, key_id: str, before: ApiKey | None, after: ApiKey
) -> tuple[Any, ...]:
    """The `audit` columns (at, actor, action, adapter, before, after) of a key change."""
    return (
        at,
        actor,
        action,
        AUDIT_SUBJECT.format(id=key_id),
        json.dumps(before.public() if before else None),
        json.dumps(after.public()),
    )

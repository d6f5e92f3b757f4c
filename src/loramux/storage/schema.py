"""The tables of the registry database, and opening it migrated to the newest schema.

One SQLite file holds the adapter registry's tables (adapters, versions, traffic, audit,
requests, usage, feedback) and the key store's (`api_keys`); one `PRAGMA user_version` numbers
the schema of the whole file, so the steps of both live here in the order they were added.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from loramux.errors import ConfigError
from loramux.storage.sqlite import connect, pragma, transaction

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE adapters (
            name TEXT PRIMARY KEY,
            department TEXT NOT NULL,
            description TEXT NOT NULL,
            utterances TEXT NOT NULL,
            experiment_id TEXT,
            main_version TEXT,
            revision INTEGER NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL)""",
        """CREATE TABLE versions (
            adapter TEXT NOT NULL REFERENCES adapters(name),
            version TEXT NOT NULL,
            rank INTEGER NOT NULL,
            target_modules TEXT NOT NULL,
            base_model TEXT NOT NULL,
            path TEXT NOT NULL,
            size_bytes INTEGER NOT NULL,
            card TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('staged', 'active', 'retired')),
            created_at REAL NOT NULL,
            created_by TEXT NOT NULL,
            PRIMARY KEY (adapter, version))""",
        """CREATE TABLE traffic (
            adapter TEXT NOT NULL REFERENCES adapters(name),
            version TEXT NOT NULL,
            weight INTEGER NOT NULL CHECK (weight BETWEEN 1 AND 100),
            PRIMARY KEY (adapter, version),
            FOREIGN KEY (adapter, version) REFERENCES versions(adapter, version))""",
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            adapter TEXT NOT NULL,
            version TEXT,
            before TEXT,
            after TEXT)""",
        "CREATE INDEX audit_by_adapter ON audit (adapter, id)",
        """CREATE TABLE requests (
            request_id TEXT PRIMARY KEY,
            adapter TEXT NOT NULL,
            version TEXT NOT NULL,
            experiment_id TEXT NOT NULL,
            at REAL NOT NULL)""",
        "CREATE INDEX requests_by_time ON requests (at)",
        """CREATE TABLE usage (
            adapter TEXT NOT NULL,
            version TEXT NOT NULL,
            experiment_id TEXT NOT NULL,
            requests INTEGER NOT NULL,
            errors INTEGER NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            PRIMARY KEY (adapter, version, experiment_id))""",
        """CREATE TABLE feedback (
            request_id TEXT PRIMARY KEY,
            adapter TEXT NOT NULL,
            version TEXT NOT NULL,
            experiment_id TEXT NOT NULL,
            rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
            comment TEXT NOT NULL,
            at REAL NOT NULL)""",
        "CREATE INDEX feedback_by_experiment ON feedback (adapter, experiment_id)",
    ),
    (
        # Per-department API keys (loramux.keys.store): the sha256 of each key, never the key.
        """CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            prefix TEXT NOT NULL,
            hash TEXT NOT NULL UNIQUE,
            department TEXT NOT NULL,
            label TEXT NOT NULL,
            adapters TEXT NOT NULL,
            base INTEGER NOT NULL CHECK (base IN (0, 1)),
            rag INTEGER NOT NULL CHECK (rag IN (0, 1)),
            rpm INTEGER CHECK (rpm >= 1),
            tpm INTEGER CHECK (tpm >= 1),
            created_at REAL NOT NULL,
            created_by TEXT NOT NULL,
            revoked_at REAL,
            revoked_by TEXT)""",
    ),
    (
        # Adapter paging: a pinned adapter's versions are never evicted from the engine.
        "ALTER TABLE adapters ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0"
        " CHECK (pinned IN (0, 1))",
    ),
    (
        # API key expiry and rotation (loramux.keys): NULL expires_at never expires; rotated_at
        # is when the secret was last replaced (the id and access stay).
        "ALTER TABLE api_keys ADD COLUMN expires_at REAL",
        "ALTER TABLE api_keys ADD COLUMN rotated_at REAL",
    ),
    (
        # Tenancy: the API key that made a request; only it (or the admin key) may rate it.
        # Rows from before have NULL: only the admin key may rate those.
        "ALTER TABLE requests ADD COLUMN key_id TEXT",
    ),
    (
        # Fair share: a key's weight for the generation slots under load (limits.fair_share).
        "ALTER TABLE api_keys ADD COLUMN weight REAL NOT NULL DEFAULT 1.0 CHECK (weight > 0)",
    ),
)
"""MIGRATIONS[i] takes the schema from `user_version` i to i + 1."""


def open_database(path: Path) -> sqlite3.Connection:
    """Open the registry database, creating it and migrating it forward when needed.

    The file is put in WAL mode (lasting, for every connection) and this connection enforces
    foreign keys.

    Args:
        path: the SQLite file (`<data_dir>/registry.sqlite3`); its folder is created.

    Returns:
        A connection as `connect` makes them, for every thread of this process.

    Raises:
        ConfigError: the file is not a registry database or is from a newer loramux.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = connect(path)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA foreign_keys = ON")
        migrate(db, path)
    except sqlite3.DatabaseError as exc:
        db.close()
        raise ConfigError(f"{path} is not a usable registry database: {exc}") from exc
    except BaseException:
        db.close()
        raise
    return db


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring an open database to the newest schema, in one transaction.

    Args:
        db: a connection from `connect`, not yet shared between threads.
        path: the file it is connected to (for messages).

    Raises:
        ConfigError: the file has a schema newer than this loramux knows.
    """
    with transaction(db):
        current = pragma(db, "user_version")
        if current > len(MIGRATIONS):
            raise ConfigError(
                f"{path} has registry schema {current}, newer than this loramux knows "
                f"({len(MIGRATIONS)}); upgrade loramux"
            )
        for step in MIGRATIONS[current:]:
            for statement in step:
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

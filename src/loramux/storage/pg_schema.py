"""The registry's tables in PostgreSQL, and migrating a database to the newest schema.

`PG_MIGRATIONS` runs parallel to SQLite's `schema.MIGRATIONS`: step i of one takes a database
to the same tables as step i of the other, in each database's own dialect (identity columns,
`double precision`, a JSON text column stays text so `rows` reads both alike). One numbering for
both keeps "schema 6" meaning one set of tables whichever store holds it, and a test checks the
two lists have the same length, so a step added to one without the other fails the suite.

PostgreSQL-only parts live in step 1: `loramux_schema` (the schema version, the analogue of
SQLite's `PRAGMA user_version`) and `registry_changes` (a counter every registry change bumps:
what `changed()` polls, and the row whose lock makes registry writes take turns, as SQLite's
BEGIN IMMEDIATE does). Migrations run in one transaction under an advisory lock, so gateways
starting together migrate once.
"""

from __future__ import annotations

from typing import Any

import psycopg

from loramux.errors import ConfigError

MIGRATION_LOCK = 0x6C6D7801
"""`pg_advisory_xact_lock` key taken while migrating (one migrator at a time)."""

PG_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE registry_changes (
            id SMALLINT PRIMARY KEY CHECK (id = 1),
            n BIGINT NOT NULL)""",
        "INSERT INTO registry_changes (id, n) VALUES (1, 0)",
        """CREATE TABLE adapters (
            name TEXT PRIMARY KEY,
            department TEXT NOT NULL,
            description TEXT NOT NULL,
            utterances TEXT NOT NULL,
            experiment_id TEXT,
            main_version TEXT,
            revision BIGINT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE versions (
            adapter TEXT NOT NULL REFERENCES adapters(name),
            version TEXT NOT NULL,
            rank INTEGER NOT NULL,
            target_modules TEXT NOT NULL,
            base_model TEXT NOT NULL,
            path TEXT NOT NULL,
            size_bytes BIGINT NOT NULL,
            card TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('staged', 'active', 'retired')),
            created_at DOUBLE PRECISION NOT NULL,
            created_by TEXT NOT NULL,
            PRIMARY KEY (adapter, version))""",
        """CREATE TABLE traffic (
            adapter TEXT NOT NULL REFERENCES adapters(name),
            version TEXT NOT NULL,
            weight INTEGER NOT NULL CHECK (weight BETWEEN 1 AND 100),
            PRIMARY KEY (adapter, version),
            FOREIGN KEY (adapter, version) REFERENCES versions(adapter, version))""",
        """CREATE TABLE audit (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at DOUBLE PRECISION NOT NULL,
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
            at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX requests_by_time ON requests (at)",
        """CREATE TABLE usage (
            adapter TEXT NOT NULL,
            version TEXT NOT NULL,
            experiment_id TEXT NOT NULL,
            requests BIGINT NOT NULL,
            errors BIGINT NOT NULL,
            prompt_tokens BIGINT NOT NULL,
            completion_tokens BIGINT NOT NULL,
            PRIMARY KEY (adapter, version, experiment_id))""",
        """CREATE TABLE feedback (
            request_id TEXT PRIMARY KEY,
            adapter TEXT NOT NULL,
            version TEXT NOT NULL,
            experiment_id TEXT NOT NULL,
            rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
            comment TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX feedback_by_experiment ON feedback (adapter, experiment_id)",
    ),
    (
        """CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            prefix TEXT NOT NULL,
            hash TEXT NOT NULL UNIQUE,
            department TEXT NOT NULL,
            label TEXT NOT NULL,
            adapters TEXT NOT NULL,
            base SMALLINT NOT NULL CHECK (base IN (0, 1)),
            rag SMALLINT NOT NULL CHECK (rag IN (0, 1)),
            rpm INTEGER CHECK (rpm >= 1),
            tpm INTEGER CHECK (tpm >= 1),
            created_at DOUBLE PRECISION NOT NULL,
            created_by TEXT NOT NULL,
            revoked_at DOUBLE PRECISION,
            revoked_by TEXT)""",
    ),
    (
        "ALTER TABLE adapters ADD COLUMN pinned SMALLINT NOT NULL DEFAULT 0"
        " CHECK (pinned IN (0, 1))",
    ),
    (
        "ALTER TABLE api_keys ADD COLUMN expires_at DOUBLE PRECISION",
        "ALTER TABLE api_keys ADD COLUMN rotated_at DOUBLE PRECISION",
    ),
    ("ALTER TABLE requests ADD COLUMN key_id TEXT",),
    (
        "ALTER TABLE api_keys ADD COLUMN weight DOUBLE PRECISION NOT NULL DEFAULT 1.0"
        " CHECK (weight > 0)",
    ),
)
"""PG_MIGRATIONS[i] takes the schema from version i to i + 1 (as `schema.MIGRATIONS[i]`)."""


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The schema version of a database (0 when loramux never migrated it)."""
    row = conn.execute("SELECT to_regclass('loramux_schema') IS NOT NULL AS present").fetchone()
    if row is None or not _first(row):
        return 0
    found = conn.execute("SELECT version FROM loramux_schema WHERE id = 1").fetchone()
    return 0 if found is None else int(_first(found))


def migrate(conn: psycopg.Connection[Any], target: int | None = None) -> int:
    """Bring a database to the newest schema (or to `target`), in one transaction.

    Args:
        conn: an autocommit connection.
        target: stop at this version (tests build an older schema with it).

    Returns:
        The version the database had before.

    Raises:
        ConfigError: the database has a schema newer than this loramux knows.
    """
    goal = len(PG_MIGRATIONS) if target is None else target
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            """CREATE TABLE IF NOT EXISTS loramux_schema (
                   id SMALLINT PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"""
        )
        current = schema_version(conn)
        if current > len(PG_MIGRATIONS):
            raise ConfigError(
                f"the PostgreSQL database (registry.database_url) has registry schema {current}, "
                f"newer than this loramux knows ({len(PG_MIGRATIONS)}); upgrade loramux"
            )
        for step in PG_MIGRATIONS[current:goal]:
            for statement in step:
                conn.execute(statement)
        if goal > current:
            conn.execute(
                """INSERT INTO loramux_schema (id, version) VALUES (1, %s)
                   ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version""",
                (goal,),
            )
    return current


def _first(row: Any) -> Any:
    return next(iter(row.values())) if isinstance(row, dict) else row[0]

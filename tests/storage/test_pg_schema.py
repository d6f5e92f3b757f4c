"""Migrations of the PostgreSQL registry database: from an empty database, from the previous
schema with its rows kept, a newer schema refused; the two dialects' step lists stay parallel."""

from __future__ import annotations

import threading

import psycopg
import pytest

from loramux.errors import ConfigError, StoreUnavailableError
from loramux.storage.pg_schema import PG_MIGRATIONS, migrate, schema_version
from loramux.storage.schema import MIGRATIONS


def test_postgres_and_sqlite_migrations_have_the_same_steps() -> None:
    # One numbering: schema n is the same tables whichever database holds it.
    assert len(PG_MIGRATIONS) == len(MIGRATIONS)


def test_an_unreachable_database_is_a_503_with_a_readable_message() -> None:
    from loramux.storage.postgres import Database

    with pytest.raises(StoreUnavailableError, match="cannot connect to PostgreSQL") as info:
        Database("postgresql://loramux@127.0.0.1:9/none?connect_timeout=2")
    assert info.value.status == 503
    assert "\n" not in info.value.message


@pytest.mark.postgres
def test_an_empty_database_is_migrated_to_the_newest_schema(pg_dsn: str) -> None:
    from loramux.adapters.pg_store import PostgresRegistryStore

    PostgresRegistryStore(pg_dsn).close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert schema_version(conn) == len(PG_MIGRATIONS)
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        }
    assert {"adapters", "versions", "traffic", "audit", "requests", "usage", "feedback"} <= tables
    assert {"api_keys", "registry_changes", "loramux_schema"} <= tables


@pytest.mark.postgres
def test_the_previous_schema_is_migrated_and_keeps_its_rows(pg_dsn: str) -> None:
    from loramux.keys.pg_store import PostgresKeyStore

    previous = len(PG_MIGRATIONS) - 1
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert migrate(conn, target=previous) == 0
        assert schema_version(conn) == previous
        conn.execute(
            """INSERT INTO api_keys (id, prefix, hash, department, label, adapters, base, rag,
                   created_at, created_by) VALUES ('k1', 'lmx-abcdefgh', 'h1', 'hr', '', '[]',
                   1, 0, 1.0, 'cli')"""
        )
    store = PostgresKeyStore(pg_dsn)  # opening migrates to the newest schema
    try:
        key = store.get("k1")
        assert (key.department, key.weight, key.base) == ("hr", 1.0, True)
    finally:
        store.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert schema_version(conn) == len(PG_MIGRATIONS)
        assert migrate(conn) == len(PG_MIGRATIONS)  # nothing left to do


@pytest.mark.postgres
def test_a_newer_schema_is_refused(pg_dsn: str) -> None:
    from loramux.adapters.pg_store import PostgresRegistryStore

    PostgresRegistryStore(pg_dsn).close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE loramux_schema SET version = 99")
    with pytest.raises(ConfigError, match="newer than this loramux knows"):
        PostgresRegistryStore(pg_dsn)


@pytest.mark.postgres
def test_gateways_starting_together_migrate_once(pg_dsn: str) -> None:
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                migrate(conn)
        except BaseException as exc:  # collected and checked below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert schema_version(conn) == len(PG_MIGRATIONS)


@pytest.mark.postgres
def test_a_dropped_connection_is_a_503_once_and_then_reopened(pg_dsn: str) -> None:
    from loramux.adapters.pg_store import PostgresRegistryStore

    store = PostgresRegistryStore(pg_dsn)
    try:
        store.load()

        def drop_all() -> None:
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )

        drop_all()
        store._db.ping_after_s = 3600  # not checked before use: the statement finds it
        with pytest.raises(StoreUnavailableError) as info:
            store.load()
        assert info.value.status == 503
        assert store.load().adapters == {}  # reopened
        drop_all()
        store._db.ping_after_s = 0  # checked before use: the caller never sees it
        assert store.load().adapters == {}
    finally:
        store.close()


def test_a_malformed_dsn_is_a_config_error_that_does_not_repeat_it() -> None:
    from loramux.storage.postgres import Database

    with pytest.raises(ConfigError, match="not a valid PostgreSQL DSN") as info:
        Database("host=db password=s3cret-pw dbname")
    assert "s3cret" not in info.value.message

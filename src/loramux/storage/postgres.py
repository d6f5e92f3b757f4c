"""PostgreSQL plumbing shared by the registry and the key store (`registry.store: postgres`).

`Database` is one connection to the database `registry.database_url` (or
`LORAMUX_DATABASE_URL`) names, migrated on open (`pg_schema.migrate`), shared by the threads
of one process behind a lock, and opened again after the server dropped it. Every write is one
`transaction`; a statement waits at most `LOCK_TIMEOUT_MS` for a row another gateway holds and
runs at most `STATEMENT_TIMEOUT_MS`. A database that cannot be reached is a 503
(`StoreUnavailableError`), never a traceback.

`Listener` follows `LISTEN` on a channel in a daemon thread with its own connection and calls
back on each notification (and after every reconnect, since notifications sent while it was
away are lost): how a change committed by one gateway wakes the others within milliseconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from loramux.errors import ConfigError, StoreUnavailableError
from loramux.storage.pg_schema import migrate

logger = logging.getLogger(__name__)

CHANGES_CHANNEL = "loramux_registry"
"""The NOTIFY channel every registry change is announced on (the payload is the adapter)."""
LOCK_TIMEOUT_MS = 5000
"""How long a statement waits for a lock another connection holds (SQLite's busy_timeout)."""
STATEMENT_TIMEOUT_MS = 30000
"""The longest a statement may run."""
CONNECT_TIMEOUT_S = 5
PING_AFTER_S = 5.0
"""A connection idle this long is checked before use (and reopened when the server dropped it)."""

Conn = psycopg.Connection[dict[str, Any]]


def connect(dsn: str) -> Conn:
    """An autocommit connection with rows as dicts and the timeouts above.

    Raises:
        StoreUnavailableError: the server cannot be reached or refuses the login.
    """
    try:
        return psycopg.connect(
            dsn,
            autocommit=True,
            row_factory=dict_row,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="loramux",
            options=f"-c lock_timeout={LOCK_TIMEOUT_MS} "
            f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        )
    except psycopg.ProgrammingError as exc:  # a malformed DSN; its text may hold the password
        raise ConfigError(
            "registry.database_url (or LORAMUX_DATABASE_URL) is not a valid PostgreSQL DSN: "
            "give postgresql://user:password@host:5432/dbname or `host=... dbname=... user=...`"
        ) from exc
    except psycopg.Error as exc:
        raise StoreUnavailableError(f"cannot connect to PostgreSQL: {_one_line(exc)}") from exc


class Database:
    """One migrated connection shared by the threads of a process; see the module docstring."""

    def __init__(self, dsn: str) -> None:
        """Connect and migrate the database to the newest schema.

        Raises:
            ConfigError: a malformed DSN, or a schema newer than this loramux knows.
            StoreUnavailableError: the server cannot be reached.
        """
        self.dsn = dsn
        self.ping_after_s = PING_AFTER_S
        self._used_at = time.monotonic()
        self._lock = threading.RLock()
        self._conn: Conn | None = connect(dsn)
        try:
            migrate(self._conn)
        except psycopg.Error as exc:
            self._conn.close()
            raise StoreUnavailableError(
                f"cannot migrate the PostgreSQL registry: {_one_line(exc)}"
            ) from exc
        except BaseException:
            self._conn.close()
            raise

    def _live(self) -> Conn:
        """The connection, checked with `SELECT 1` when it sat idle past `ping_after_s` (a
        restarted server or a dropped connection is found here, not by the caller's
        statement), and opened again when it is gone."""
        conn = self._conn
        now = time.monotonic()
        if conn is not None and not conn.broken and now - self._used_at > self.ping_after_s:
            try:
                conn.execute("SELECT 1")
            except psycopg.Error:
                conn.close()
        self._used_at = now
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
                logger.warning("PostgreSQL connection lost; reconnecting")
            self._conn = conn = connect(self.dsn)
        return conn

    @contextmanager
    def reading(self) -> Iterator[Conn]:
        """The connection for reads (autocommit: each statement sees the latest commits)."""
        with self._lock, _unavailable_on_error():
            yield self._live()

    @contextmanager
    def transaction(self, *, snapshot: bool = False) -> Iterator[Conn]:
        """One transaction, committed on exit and rolled back on any exception.

        Args:
            snapshot: a read-only REPEATABLE READ transaction (every statement sees the same
                commits), for reads that must agree with each other.
        """
        with self._lock, _unavailable_on_error():
            conn = self._live()
            with conn.transaction():
                if snapshot:
                    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                yield conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class Listener:
    """Calls `callback(payload)` on each NOTIFY on `channel` (from its own thread), and
    `callback("")` after each (re)connect; see the module docstring."""

    def __init__(self, dsn: str, channel: str, callback: Callable[[str], None]) -> None:
        self.dsn = dsn
        self.channel = channel
        self.callback = callback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"listen-{channel}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with connect(self.dsn) as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    self._fire("")  # whatever was sent while not listening
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._fire(note.payload)
            except (psycopg.Error, StoreUnavailableError) as exc:
                if not self._stop.is_set():
                    logger.warning("LISTEN %s lost (%s); again in 1 s", self.channel, exc)
                    self._stop.wait(1.0)

    def _fire(self, payload: str) -> None:
        try:
            self.callback(payload)
        except Exception:
            logger.exception("change callback failed")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3.0)


@contextmanager
def _unavailable_on_error() -> Iterator[None]:
    """Turn a lost connection or timeout into a 503; programming errors stay what they are."""
    try:
        yield
    except (psycopg.OperationalError, psycopg.errors.QueryCanceled) as exc:
        raise StoreUnavailableError(f"the PostgreSQL registry failed: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__

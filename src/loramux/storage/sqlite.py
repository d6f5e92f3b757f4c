"""Connections to the registry database and write transactions on them.

The file is `<data_dir>/registry.sqlite3`. Connections are in autocommit mode, so every write
is an explicit `transaction` (BEGIN IMMEDIATE: the write lock is taken at once, and another
process's is waited on for up to 5 s). With WAL and `synchronous=NORMAL` a killed process loses
nothing committed; a power cut may lose the last commits, never part of one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loramux.errors import ConfigError

DB_FILE = "registry.sqlite3"
"""The registry database's name inside a data dir."""


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the registry file, for every thread of this process (callers hold a lock).

    Autocommit mode (transactions are explicit, see `transaction`), rows by column name, a 5 s
    wait on another process's write lock.

    Raises:
        ConfigError: SQLite cannot use the file.
    """
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    try:
        db.execute("PRAGMA busy_timeout = 5000")
        db.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.DatabaseError as exc:
        db.close()
        raise ConfigError(f"{path} is not a usable registry database: {exc}") from exc
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taken at once (BEGIN IMMEDIATE); rolled back on any exception."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def pragma(db: sqlite3.Connection, name: str) -> int:
    """The value of an integer pragma (`user_version`, `data_version`)."""
    return int(db.execute(f"PRAGMA {name}").fetchone()[0])

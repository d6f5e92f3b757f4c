"""API key rotation and expiry: the keyring, the gate, and an older database migrated (HTTP and
the `openai` client: tests/api/test_keys_api.py)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from loramux.config import AuthSettings
from loramux.errors import AuthenticationError, InvalidRequestError
from loramux.gateway.access import Gate
from loramux.keys.admin import AdminKeys
from loramux.keys.keyring import Keyring
from loramux.keys.records import KeySpec, parse_expiry
from loramux.keys.store import SQLiteKeyStore
from loramux.storage.schema import MIGRATIONS
from loramux.storage.sqlite import DB_FILE


class Clock:
    def __init__(self) -> None:
        self.now = 2_000_000_000.0

    def __call__(self) -> float:
        return self.now


def test_rotation_replaces_the_secret_and_keeps_the_id_and_access(tmp_path: Path) -> None:
    ring = Keyring.open(tmp_path)
    issued = ring.create(KeySpec("hr", ("hr", "it"), rpm=7), actor="ops")
    rotated = ring.rotate(issued.record.id, actor="lead")
    assert rotated.secret != issued.secret
    assert ring.lookup(issued.secret) is None
    found = ring.lookup(rotated.secret)
    assert found is not None
    assert (found.id, found.adapters, found.rpm) == (issued.record.id, ("hr", "it"), 7)
    assert found.prefix == rotated.secret[:12]
    assert found.rotated_at is not None
    ring.revoke(issued.record.id, actor="ops")
    with pytest.raises(InvalidRequestError, match="revoked"):
        ring.rotate(issued.record.id, actor="ops")
    ring.close()


def test_an_expired_key_is_refused_saying_it_expired(tmp_path: Path) -> None:
    clock = Clock()
    ring = Keyring(SQLiteKeyStore.open(tmp_path), clock=clock)
    issued = ring.create(KeySpec("hr", (), expires_at=clock.now + 3600), actor="ops")
    gate = Gate(AuthSettings(), AdminKeys({}), ring, clock=clock)
    assert gate.authenticate(f"Bearer {issued.secret}").id == issued.record.id
    clock.now += 3601
    with pytest.raises(AuthenticationError, match="expired") as info:
        gate.authenticate(f"Bearer {issued.secret}")
    assert info.value.code == "api_key_expired"
    assert issued.record.id in info.value.message  # says what to rotate
    with pytest.raises(InvalidRequestError, match="past"):
        ring.create(KeySpec("hr", (), expires_at=clock.now - 1), actor="ops")
    ring.close()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86400), ("12h", 12 * 3600), ("90m", 5400), ("2w", 14 * 86400), ("45s", 45)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_expiry(text, 1000.0) == 1000.0 + seconds


def test_iso_dates_and_bad_expiries() -> None:
    assert parse_expiry("2027-01-31", 0) == 1801353600.0  # midnight UTC
    assert parse_expiry("2027-01-31T01:00:00+01:00", 0) == 1801353600.0
    for bad in ("soon", "0d", "-3d", "2027-13-01"):
        with pytest.raises(InvalidRequestError, match="duration"):
            parse_expiry(bad, 0)


def test_a_database_from_before_expiry_gets_the_columns(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / DB_FILE)
    for step in MIGRATIONS[:-1]:
        for statement in step:
            db.execute(statement)
    db.execute(
        "INSERT INTO api_keys (id, prefix, hash, department, label, adapters, base, rag, "
        "created_at, created_by) VALUES ('k1', 'lmx-x', 'h', 'hr', '', '[]', 1, 1, 0, 'ops')"
    )
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) - 1}")
    db.commit()
    db.close()
    ring = Keyring.open(tmp_path)
    old = ring.store.get("k1")
    assert (old.expires_at, old.rotated_at) == (None, None)
    assert not old.expired(time.time())
    ring.close()

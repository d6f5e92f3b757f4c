"""API keys in the registry database: stored hashed, revocable, audited, migrated into old files."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from loramux.adapters.sqlite_store import SQLiteRegistryStore
from loramux.errors import InvalidRequestError, KeyNotFoundError
from loramux.keys.keyring import Keyring
from loramux.keys.records import KeySpec
from loramux.storage.schema import MIGRATIONS
from loramux.storage.sqlite import DB_FILE


@pytest.fixture
def keyring(tmp_path: Path) -> Iterator[Keyring]:
    ring = Keyring.open(tmp_path)
    yield ring
    ring.close()


def test_a_key_is_stored_only_as_its_sha256(keyring: Keyring, tmp_path: Path) -> None:
    issued = keyring.create(KeySpec("hr", ("hr",)), actor="ops")
    raw = (tmp_path / DB_FILE).read_bytes()
    for wal in tmp_path.glob(f"{DB_FILE}-wal"):
        raw += wal.read_bytes()
    assert issued.secret.encode() not in raw
    assert hashlib.sha256(issued.secret.encode()).hexdigest().encode() in raw
    found = keyring.lookup(issued.secret)
    assert found is not None
    assert found.id == issued.record.id
    assert keyring.lookup(issued.secret + "x") is None
    assert keyring.lookup("not-even-a-key") is None


def test_revoked_keys_are_found_but_marked(keyring: Keyring) -> None:
    issued = keyring.create(KeySpec("it", ("it",), rpm=10), actor="ops")
    assert keyring.has_keys()
    revoked = keyring.revoke(issued.record.id, actor="ops")
    assert revoked.revoked
    assert revoked.revoked_by == "ops"
    again = keyring.revoke(issued.record.id, actor="someone else")
    assert again.revoked_by == "ops"  # a second revocation changes nothing
    found = keyring.lookup(issued.secret)
    assert found is not None
    assert found.revoked
    assert not keyring.has_keys()
    with pytest.raises(KeyNotFoundError):
        keyring.revoke("nope", actor="ops")


def test_changes_are_in_the_registry_audit_log(keyring: Keyring, tmp_path: Path) -> None:
    issued = keyring.create(KeySpec("hr", ("hr", "it")), actor="ops")
    keyring.revoke(issued.record.id, actor="lead")
    store = SQLiteRegistryStore(tmp_path / DB_FILE)
    try:
        entries = store.audit_log(f"key:{issued.record.id}")
    finally:
        store.close()
    assert [(e.action, e.actor) for e in entries] == [("key.revoke", "lead"), ("key.create", "ops")]
    assert entries[1].after["adapters"] == ["hr", "it"]
    assert issued.secret not in str(entries)


def test_an_older_registry_database_gets_the_keys_table(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / DB_FILE)
    for statement in MIGRATIONS[0]:
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    ring = Keyring.open(tmp_path)
    try:
        issued = ring.create(KeySpec("hr", ()), actor="ops")
        assert ring.lookup(issued.secret) is not None
    finally:
        ring.close()


@pytest.mark.parametrize(
    ("spec", "param"),
    [
        (KeySpec("", ()), "department"),
        (KeySpec("h r", ()), "department"),
        (KeySpec("hr", ("auto",)), "adapters"),
        (KeySpec("hr", ("Bad Name",)), "adapters"),
        (KeySpec("hr", (), rpm=0), "rpm"),
        (KeySpec("hr", (), tpm=-1), "tpm"),
        (KeySpec("hr", (), label="x" * 201), "label"),
        (KeySpec("hr", (), weight=0), "weight"),
        (KeySpec("hr", (), weight=1001), "weight"),
    ],
)
def test_invalid_specs_are_refused_naming_the_field(
    keyring: Keyring, spec: KeySpec, param: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        keyring.create(spec, actor="ops")
    assert info.value.param == param
    assert keyring.list_keys() == []


def test_a_keys_weight_is_stored_and_reaches_its_caller(keyring: Keyring) -> None:
    from loramux.config import AuthSettings
    from loramux.gateway.access import Gate
    from loramux.keys.admin import AdminKeys

    issued = keyring.create(KeySpec("hr", ("hr",), weight=2.5), actor="ops")
    assert keyring.list_keys()[0].weight == 2.5
    assert issued.record.public()["weight"] == 2.5
    gate = Gate(AuthSettings(), AdminKeys({}), keyring)
    caller = gate.authenticate(f"Bearer {issued.secret}")
    assert (caller.weight, caller.tenant) == (2.5, "hr")
    plain = keyring.create(KeySpec("it", ()), actor="ops")
    assert gate.authenticate(f"Bearer {plain.secret}").weight == 1.0

"""API keys in PostgreSQL: a key made or revoked through one gateway's keyring is seen by
another's on its next lookup; concurrent revocations write one audit entry."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from loramux.config import RegistrySettings
from loramux.keys.keyring import Keyring
from loramux.keys.records import KeySpec

pytestmark = pytest.mark.postgres


def _ring(tmp_path: Path, dsn: str) -> Keyring:
    settings = RegistrySettings(store="postgres", database_url=dsn)
    return Keyring.open(tmp_path, settings)


def test_a_key_revoked_on_one_gateway_is_refused_by_another(tmp_path: Path, pg_dsn: str) -> None:
    a, b = _ring(tmp_path, pg_dsn), _ring(tmp_path, pg_dsn)
    try:
        issued = a.create(KeySpec(department="hr", adapters=("hr",)), actor="ops")
        found = b.lookup(issued.secret)
        assert found is not None
        assert found.department == "hr"
        assert not found.revoked
        assert b.has_keys()
        b.revoke(issued.record.id, actor="ops")
        again = a.lookup(issued.secret)
        assert again is not None
        assert again.revoked
        assert not a.has_keys()
        assert [k.id for k in a.list_keys()] == [issued.record.id]
    finally:
        a.close()
        b.close()


def test_rotation_replaces_the_secret_everywhere(tmp_path: Path, pg_dsn: str) -> None:
    a, b = _ring(tmp_path, pg_dsn), _ring(tmp_path, pg_dsn)
    try:
        old = a.create(KeySpec(department="it", adapters=()), actor="ops")
        new = b.rotate(old.record.id, actor="ops")
        assert a.lookup(old.secret) is None
        found = a.lookup(new.secret)
        assert found is not None
        assert found.id == old.record.id
    finally:
        a.close()
        b.close()


def test_concurrent_revocations_write_one_audit_entry(tmp_path: Path, pg_dsn: str) -> None:
    from loramux.adapters.pg_store import PostgresRegistryStore

    rings = [_ring(tmp_path, pg_dsn) for _ in range(3)]
    try:
        issued = rings[0].create(KeySpec(department="hr", adapters=()), actor="ops")
        barrier = threading.Barrier(len(rings))

        def revoke(ring: Keyring) -> None:
            barrier.wait()
            ring.revoke(issued.record.id, actor="ops")

        threads = [threading.Thread(target=revoke, args=(r,)) for r in rings]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        store = PostgresRegistryStore(pg_dsn)
        try:
            actions = [e.action for e in store.audit_log(f"key:{issued.record.id}")]
        finally:
            store.close()
        assert actions == ["key.revoke", "key.create"]
    finally:
        for r in rings:
            r.close()

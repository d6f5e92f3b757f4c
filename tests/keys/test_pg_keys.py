"""API keys in PostgreSQL: a key made or revoked through one gateway's keyring is seen by
another's on its next lookup; concurrent revocations write one audit entry."""

from __future__ import annotations

import threading
import time
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


def test_a_revocation_reaches_a_gateway_that_cached_the_key_at_once(
    tmp_path: Path, pg_dsn: str
) -> None:
    import time

    a, b = _ring(tmp_path, pg_dsn), _ring(tmp_path, pg_dsn)
    try:
        issued = a.create(KeySpec(department="hr", adapters=()), actor="ops")
        for _ in range(3):  # B has it cached now
            found = b.lookup(issued.secret)
            assert found is not None
            assert not found.revoked
        time.sleep(0.2)  # B's listener is connected
        a.revoke(issued.record.id, actor="ops")
        started = time.monotonic()
        while not (found := b.lookup(issued.secret)) or not found.revoked:
            assert time.monotonic() - started < 0.5, "B answered from a stale cache"
            time.sleep(0.01)
    finally:
        a.close()
        b.close()


def test_without_notifications_a_cached_key_is_read_again_within_the_ttl(pg_dsn: str) -> None:
    import time

    import psycopg

    from loramux.keys.keyring import key_digest
    from loramux.keys.pg_store import CACHE_TTL_S, PostgresKeyStore

    now = [0.0]
    store = PostgresKeyStore(pg_dsn, clock=lambda: now[0])
    ring = Keyring(store)
    try:
        issued = ring.create(KeySpec(department="hr", adapters=()), actor="ops")
        assert store.find(key_digest(issued.secret)) is not None  # starts the listener
        time.sleep(0.3)  # connected (which empties the cache once)
        assert store.find(key_digest(issued.secret)) is not None  # cached at "0"
        with psycopg.connect(pg_dsn, autocommit=True) as conn:  # a change nobody announces
            conn.execute("UPDATE api_keys SET revoked_at = 1 WHERE id = %s", (issued.record.id,))
        now[0] = CACHE_TTL_S / 2
        cached = store.find(key_digest(issued.secret))
        assert cached is not None
        assert not cached.revoked  # answered from memory: the documented TTL
        now[0] = CACHE_TTL_S + 0.01
        fresh = store.find(key_digest(issued.secret))
        assert fresh is not None
        assert fresh.revoked
    finally:
        ring.close()


def test_the_cli_makes_and_revokes_keys_in_postgres_from_the_env_dsn(
    tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from typer.testing import CliRunner

    from loramux.cli import app

    config = tmp_path / "c.yaml"
    config.write_text(
        f"paths: {{data_dir: {tmp_path / 'data'}}}\nengine: {{kind: fake}}\n"
        "registry: {store: postgres}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("LORAMUX_DATABASE_URL", pg_dsn)
    runner = CliRunner()
    made = runner.invoke(
        app, ["keys", "create", "--department", "hr", "--adapters", "hr", "--config", str(config)]
    )
    assert made.exit_code == 0, made.stdout
    created = json.loads(made.stdout)
    ring = _ring(tmp_path, pg_dsn)  # another process's view: the same database
    try:
        found = ring.lookup(created["key"])
        assert found is not None
        assert found.department == "hr"
        gone = runner.invoke(app, ["keys", "revoke", created["id"], "--config", str(config)])
        assert gone.exit_code == 0, gone.stdout
        started = time.monotonic()  # NOTIFY, or at worst the cache's 1 s
        while not (again := ring.lookup(created["key"])) or not again.revoked:
            assert time.monotonic() - started < 2.0
            time.sleep(0.02)
    finally:
        ring.close()
    monkeypatch.delenv("LORAMUX_DATABASE_URL")
    refused = runner.invoke(app, ["keys", "list", "--config", str(config)])
    assert refused.exit_code != 0
    assert "LORAMUX_DATABASE_URL" in refused.output
    assert "Traceback" not in refused.output


def test_fleet_limits_take_one_gateways_use_from_the_others_buckets(pg_dsn: str) -> None:
    from loramux.errors import RateLimitError
    from loramux.keys.fleet_limits import FleetLimits
    from loramux.keys.ratelimit import Limits, RateLimiter

    a, b = RateLimiter(), RateLimiter()
    fa, fb = FleetLimits(pg_dsn, a), FleetLimits(pg_dsn, b)
    try:
        time.sleep(0.3)  # both listening
        limits = Limits(rpm=5)
        b.count_request("k", limits)  # B: 4 of 5 left
        for _ in range(4):
            a.count_request("k", limits)  # A alone would allow one more
        assert fa.flush() == 1
        assert fa.flush() == 0  # nothing new
        started = time.monotonic()
        while b._requests["k"].level >= 1:  # private: look without spending a request
            assert time.monotonic() - started < 2.0, "B never heard of A's use"
            time.sleep(0.02)
        with pytest.raises(RateLimitError):
            b.count_request("k", limits)  # 1 on B + 4 on A: the fleet's 5 are used
        assert fb.flush() == 1
        started = time.monotonic()
        while a._requests["k"].level >= 1:  # and A heard of B's first one
            assert time.monotonic() - started < 2.0, "A never heard of B's use"
            time.sleep(0.02)
    finally:
        fa.close()
        fb.close()

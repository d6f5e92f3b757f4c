"""The registry over a real PostgreSQL (`registry.store: postgres`): the same state as SQLite,
one winner when two gateways change an adapter at once, and changes that reach another
gateway's registry through NOTIFY."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from loramux.adapters.records import (
    AuditEntry,
    Change,
    FeedbackRecord,
    RequestRecord,
    UsageDelta,
    VersionStatus,
)
from loramux.adapters.registry import AdapterRegistry
from loramux.config import RegistrySettings
from loramux.errors import AdapterConflictError
from loramux.serve.fake import FakeEngine
from tests.builders import SMOLLM2_SPEC, write_lora_folder

if TYPE_CHECKING:
    from loramux.adapters.pg_store import PostgresRegistryStore

pytestmark = pytest.mark.postgres


def _settings(dsn: str, **extra: object) -> RegistrySettings:
    return RegistrySettings.model_validate({"store": "postgres", "database_url": dsn, **extra})


async def _open(data: Path, dsn: str, **extra: object) -> AdapterRegistry:
    registry = AdapterRegistry.open(data, SMOLLM2_SPEC, _settings(dsn, **extra))
    await registry.start()
    return registry


@pytest.fixture
def folders(tmp_path: Path) -> list[Path]:
    return [write_lora_folder(tmp_path / f"src{i}", seed=i) for i in range(3)]


@pytest.fixture
async def registry(tmp_path: Path, pg_dsn: str) -> AsyncIterator[AdapterRegistry]:
    reg = await _open(tmp_path / "data", pg_dsn)
    yield reg
    await reg.close()


async def test_every_kind_of_registry_state_survives_a_reopen(
    registry: AdapterRegistry, folders: list[Path], tmp_path: Path, pg_dsn: str
) -> None:
    v1 = (await registry.register(folders[0], name="hr", actor="ops")).version.version
    v2 = (await registry.register(folders[1], name="hr", actor="ops")).version.version
    split = await registry.set_traffic("hr", {v1: 70, v2: 30}, actor="ops")
    exp = split.experiment_id
    assert exp is not None
    store = registry.store
    store.save_usage(
        [RequestRecord("r1", "hr", v2, exp, time.time(), "k1")],
        [UsageDelta("hr", v2, exp, requests=1, prompt_tokens=5, completion_tokens=7)],
    )
    store.save_usage([], [UsageDelta("hr", v2, exp, requests=2, errors=1)])
    store.save_feedback(FeedbackRecord("r1", "hr", v2, exp, "up", "nice", time.time()))
    await registry.close()

    again = await _open(tmp_path / "data", pg_dsn)
    try:
        adapter, versions = again.get("hr")
        assert adapter.traffic == {v1: 70, v2: 30}
        assert {v.version: v.status for v in versions} == {
            v1: VersionStatus.ACTIVE,
            v2: VersionStatus.ACTIVE,
        }
        s = again.store
        found = s.find_request("r1")
        assert found is not None
        assert found.key_id == "k1"
        assert s.ratings(["r1", "nope"]) == {"r1": "up"}
        assert s.feedback_counts("hr", exp) == {v2: (1, 0)}
        assert s.usage("hr", exp)[v2] == UsageDelta("hr", v2, exp, 3, 1, 5, 7)
        assert s.request_counts() == {f"hr@{v2}": 3}
        assert s.last_request_at("hr") is not None
        assert [e.action for e in again.audit_log("hr")][:2] == ["set_traffic", "register"]
        assert (await again.promote("hr", v2, actor="ops")).main_version == v2
        assert (await again.rollback("hr", actor="ops")).main_version == v1
        await again.retire("hr", v2, actor="ops")
        assert again.version("hr", v2).status is VersionStatus.RETIRED
    finally:
        await again.delete("hr", actor="ops", force=True)
        assert again.adapters() == []
        assert again.store.find_request("r1") is None
        assert again.store.prune_requests(time.time()) == 0
        await again.close()


async def test_a_change_on_one_gateway_wakes_the_other_within_2_s(
    registry: AdapterRegistry, folders: list[Path], tmp_path: Path, pg_dsn: str
) -> None:
    # B polls only every 60 s: only the NOTIFY can bring the change in time.
    other = await _open(tmp_path / "data", pg_dsn, watch_interval_s=60)
    watch = asyncio.create_task(other.watch())
    try:
        await asyncio.sleep(0.3)  # the listener connects
        v1 = (await registry.register(folders[0], name="hr", actor="ops")).version.version
        started = time.monotonic()
        while "hr" not in {a.name for a in other.adapters()}:
            assert time.monotonic() - started < 2.0, "gateway B did not see the registration"
            await asyncio.sleep(0.02)
        assert other.resolve("hr") is not None
        v2 = (await registry.register(folders[1], name="hr", actor="ops")).version.version
        await registry.set_traffic("hr", {v1: 50, v2: 50}, actor="ops")
        started = time.monotonic()
        while other.get("hr")[0].traffic != {v1: 50, v2: 50}:
            assert time.monotonic() - started < 2.0, "gateway B did not see the traffic change"
            await asyncio.sleep(0.02)
        # sticky: the same user lands on the same version on both gateways
        for user in (f"user-{i}" for i in range(50)):
            assert other.resolve("hr", user) == registry.resolve("hr", user)
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        await other.close()


async def test_the_poll_sees_a_commit_the_listener_missed(
    registry: AdapterRegistry, folders: list[Path], tmp_path: Path, pg_dsn: str
) -> None:
    other = await _open(tmp_path / "data", pg_dsn)  # no watch, no listener
    try:
        assert not other.store.changed()
        await registry.register(folders[0], name="hr", actor="ops")
        assert other.store.changed()
        assert await other.refresh()
        assert not other.store.changed()
        assert [a.name for a in other.adapters()] == ["hr"]
    finally:
        await other.close()


async def test_two_gateways_changing_one_adapter_at_once_give_one_winner_and_one_conflict(
    registry: AdapterRegistry, folders: list[Path], pg_dsn: str
) -> None:
    from loramux.adapters.pg_store import PostgresRegistryStore

    v1 = (await registry.register(folders[0], name="hr", actor="ops")).version.version
    v2 = (await registry.register(folders[1], name="hr", actor="ops")).version.version
    stores = [PostgresRegistryStore(pg_dsn) for _ in range(2)]
    try:
        for round_ in range(8):
            base = stores[0].load().adapters["hr"]
            wants = [{v1: 100}, {v2: 100}]
            changes = [
                Change(
                    adapter=dataclasses.replace(
                        base, traffic=w, main_version=next(iter(w)), revision=base.revision + 1
                    ),
                    expected_revision=base.revision,
                    audit=AuditEntry(f"gw{i}", "set_traffic", "hr", None, None, w, time.time()),
                )
                for i, w in enumerate(wants)
            ]
            outcome = _race(stores, changes)
            assert sorted(outcome) == ["409", "ok"], f"round {round_}: {outcome}"
            winner = outcome.index("ok")
            after = stores[1].load().adapters["hr"]
            assert after.traffic == wants[winner]  # the winner's split, never a mix
            assert after.revision == base.revision + 1
            entries = registry.store.audit_log("hr", limit=1)
            assert entries[0].actor == f"gw{winner}"
    finally:
        for s in stores:
            s.close()


def _race(stores: list[PostgresRegistryStore], changes: list[Change]) -> list[str]:
    """Apply changes[i] on stores[i], all released at once; "ok" or "409" for each."""
    barrier = threading.Barrier(len(stores))
    outcome = [""] * len(stores)

    def run(i: int) -> None:
        barrier.wait()
        try:
            stores[i].apply(changes[i])
            outcome[i] = "ok"
        except AdapterConflictError as exc:
            outcome[i] = "409" if exc.status == 409 else "?"

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    return outcome


async def test_a_version_registered_over_postgres_is_served_by_the_engine(
    tmp_path: Path, folders: list[Path], pg_dsn: str
) -> None:
    engine = FakeEngine()
    await engine.start()
    reg = AdapterRegistry.open(tmp_path / "data", SMOLLM2_SPEC, _settings(pg_dsn), engine=engine)
    await reg.start()
    try:
        record = await reg.register(folders[0], name="it", actor="ops")
        assert reg.resolve("it") is not None
        assert record.version.status is VersionStatus.ACTIVE
    finally:
        await reg.close()

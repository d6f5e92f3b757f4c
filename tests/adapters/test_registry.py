"""The registry: registration while serving, restarts, crash safety, traffic rules, resolution."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import zipfile
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from loramux.adapters.filestore import AdapterFiles
from loramux.adapters.records import VersionStatus
from loramux.adapters.registry import AdapterRegistry
from loramux.adapters.sqlite_store import SQLiteRegistryStore
from loramux.adapters.validation import spec_from_hf_config
from loramux.config import RegistrySettings
from loramux.errors import (
    AdapterConflictError,
    AdapterError,
    AdapterNotFoundError,
    ArchiveError,
    ModelNotFoundError,
)
from loramux.serve.fake import FakeEngine
from loramux.storage.schema import MIGRATIONS
from loramux.storage.sqlite import DB_FILE
from tests.builders import SMOLLM2_CONFIG, SMOLLM2_SPEC, write_lora_folder

REPO = Path(__file__).resolve().parents[2]
BASE = SMOLLM2_SPEC


async def _open(data_dir: Path, engine: FakeEngine | None = None) -> AdapterRegistry:
    registry = AdapterRegistry.open(data_dir, BASE, RegistrySettings(), engine=engine)
    await registry.start()
    return registry


@pytest.fixture
async def engine() -> FakeEngine:
    fake = FakeEngine()
    await fake.start()
    return fake


@pytest.fixture
async def registry(tmp_path: Path, engine: FakeEngine) -> AsyncIterator[AdapterRegistry]:
    reg = await _open(tmp_path / "data", engine)
    yield reg
    await reg.close()


@pytest.fixture
def folders(tmp_path: Path) -> list[Path]:
    return [write_lora_folder(tmp_path / f"src{i}", seed=i) for i in range(3)]


def _picked(registry: AdapterRegistry, user: str | None) -> str:
    """The version of `hr` a user is assigned."""
    version = registry.resolve("hr", user)
    assert version is not None
    return version.version


def _files(data_dir: Path) -> list[str]:
    """Every adapter file under the data dir (the lock file aside)."""
    return sorted(
        str(p.relative_to(data_dir))
        for p in (data_dir / "adapters").rglob("*")
        if p.is_file() and p.name != ".lock"
    )


def _snapshot(reg: AdapterRegistry, data_dir: Path) -> tuple[list[object], int, list[str]]:
    """Everything a failed change must leave as it was."""
    return (
        [(a, reg.get(a.name)[1]) for a in reg.adapters()],
        len(reg.audit_log()),
        _files(data_dir),
    )


async def test_registration_copies_checks_loads_and_audits(
    registry: AdapterRegistry, engine: FakeEngine, folders: list[Path], tmp_path: Path
) -> None:
    result = await registry.register(
        folders[0],
        name="hr",
        actor="ops",
        department="HR",
        description="HR policy",
        utterances=["How many vacation days do I get?"],
    )
    v = result.version
    assert result.created
    assert (v.status, v.rank, v.target_modules) == (VersionStatus.ACTIVE, 8, ("q_proj", "v_proj"))
    stored = tmp_path / "data" / v.path
    assert stored == tmp_path / "data" / "adapters" / "hr" / v.version
    assert (stored / "adapter_model.safetensors").read_bytes() == (
        folders[0] / "adapter_model.safetensors"
    ).read_bytes()
    assert result.adapter.traffic == {v.version: 100}
    assert result.adapter.main_version == v.version
    assert result.adapter.utterances == ("How many vacation days do I get?",)
    assert engine.loaded_adapters() == [f"hr@{v.version}"]
    resolved = registry.resolve("hr", "alice")
    assert resolved is not None
    assert resolved.path == stored
    assert resolved.description == "HR policy"
    [entry] = registry.audit_log("hr")
    assert (entry.actor, entry.action, entry.version, entry.before) == (
        "ops",
        "register",
        v.version,
        None,
    )
    assert entry.after["adapter"]["department"] == "HR"
    assert registry.resolve("SmolLM2-135M-Instruct") is None


async def test_a_second_version_is_staged_and_reachable_pinned(
    registry: AdapterRegistry, folders: list[Path]
) -> None:
    first = (await registry.register(folders[0], name="hr", actor="ops")).version
    second = (await registry.register(folders[1], name="hr", actor="ops")).version
    assert second.status is VersionStatus.STAGED
    assert registry.get("hr")[0].traffic == {first.version: 100}
    pinned = registry.resolve(f"hr@{second.version}")
    assert pinned is not None
    assert pinned.version == second.version
    assert {_picked(registry, f"u{i}") for i in range(200)} == {first.version}


async def test_registering_the_same_files_again_changes_nothing(
    registry: AdapterRegistry, folders: list[Path]
) -> None:
    first = await registry.register(folders[0], name="hr", actor="ops")
    again = await registry.register(folders[0], name="hr", actor="ops")
    assert not again.created
    assert again.version == first.version
    assert len(registry.audit_log()) == 1
    updated = await registry.register(folders[0], name="hr", actor="ops", description="new")
    assert updated.adapter.description == "new"
    assert [e.action for e in registry.audit_log()] == ["update", "register"]


async def test_archive_registration(
    registry: AdapterRegistry, folders: list[Path], tmp_path: Path
) -> None:
    archive = tmp_path / "hr.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in folders[0].iterdir():
            zf.write(p, f"hr-v1/{p.name}")
    result = await registry.register_archive(archive, name="hr", actor="ops")
    assert result.created
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../escape.json", "{}")
    with pytest.raises(ArchiveError):
        await registry.register_archive(bad, name="hr", actor="ops")
    assert not any((tmp_path / "data" / "adapters" / ".staging").iterdir())


@pytest.mark.parametrize(
    ("spoil", "words"),
    [
        (lambda f: (f / "adapter_model.bin").write_bytes(b"\x80\x04"), "pickle"),
        (lambda f: (f / "adapter_config.json").write_text('{"peft_type": "IA3"}'), "only LORA"),
        (lambda f: (f / "adapter_model.safetensors").write_bytes(b"\xff" * 64), "safetensors"),
    ],
)
async def test_refused_registrations_change_nothing(
    registry: AdapterRegistry,
    engine: FakeEngine,
    folders: list[Path],
    tmp_path: Path,
    spoil: Callable[[Path], object],
    words: str,
) -> None:
    await registry.register(folders[0], name="hr", actor="ops")
    before = _snapshot(registry, tmp_path / "data")
    loaded = engine.loaded_adapters()
    spoil(folders[1])
    with pytest.raises(AdapterError, match=words):
        await registry.register(folders[1], name="hr", actor="ops")
    assert _snapshot(registry, tmp_path / "data") == before
    assert engine.loaded_adapters() == loaded


async def test_bad_names_and_paths_are_refused(
    tmp_path: Path, engine: FakeEngine, folders: list[Path]
) -> None:
    settings = RegistrySettings(import_roots=(tmp_path / "allowed",))
    reg = AdapterRegistry(
        SQLiteRegistryStore(tmp_path / "d" / DB_FILE),
        AdapterFiles(tmp_path / "d"),
        BASE,
        settings,
        engine=engine,
    )
    await reg.start()
    with pytest.raises(AdapterError, match="reserved"):
        await reg.register(folders[0], name="auto", actor="ops")
    with pytest.raises(AdapterError, match="import_roots"):
        await reg.register(folders[0], name="hr", actor="ops")
    with pytest.raises(AdapterError, match="not a folder"):
        await reg.register(tmp_path / "allowed" / "nope", name="hr", actor="ops")
    assert reg.adapters() == []
    await reg.close()


async def test_state_survives_a_restart(tmp_path: Path, folders: list[Path]) -> None:
    data = tmp_path / "data"
    engine = FakeEngine()
    await engine.start()
    reg = await _open(data, engine)
    v1 = (await reg.register(folders[0], name="hr", actor="ops", department="HR")).version
    v2 = (await reg.register(folders[1], name="hr", actor="ops")).version
    await reg.set_traffic("hr", {v1.version: 80, v2.version: 20}, actor="ops")
    before = (reg.get("hr"), len(reg.audit_log()))
    users = {f"u{i}": reg.resolve("hr", f"u{i}") for i in range(50)}
    await reg.close()

    engine2 = FakeEngine()
    await engine2.start()
    reopened = await _open(data, engine2)
    assert (reopened.get("hr"), len(reopened.audit_log())) == before
    assert {u: reopened.resolve("hr", u) for u in users} == users
    assert engine2.loaded_adapters() == []  # registered is not loaded: the engine pages them in
    await reopened.close()


async def test_traffic_rules(registry: AdapterRegistry, folders: list[Path]) -> None:
    v1 = (await registry.register(folders[0], name="hr", actor="ops")).version.version
    v2 = (await registry.register(folders[1], name="hr", actor="ops")).version.version
    experiment = registry.get("hr")[0].experiment_id
    with pytest.raises(AdapterError, match="sum to 90"):
        await registry.set_traffic("hr", {v1: 70, v2: 20}, actor="ops")
    with pytest.raises(AdapterNotFoundError, match="no version 'feedbeef0000'"):
        await registry.set_traffic("hr", {v1: 50, "feedbeef0000": 50}, actor="ops")
    with pytest.raises(AdapterError, match="integer from 0 to 100"):
        await registry.set_traffic("hr", {v1: 50.5, v2: 49.5}, actor="ops")
    with pytest.raises(AdapterNotFoundError, match="no adapter named 'it'"):
        await registry.set_traffic("it", {v1: 100}, actor="ops")

    adapter = await registry.set_traffic("hr", {v1: 80, v2: 20}, actor="ops")
    assert adapter.traffic == {v1: 80, v2: 20}
    assert adapter.main_version == v1
    assert adapter.experiment_id != experiment
    assert registry.version("hr", v2).status is VersionStatus.ACTIVE

    with pytest.raises(AdapterConflictError, match="still gets 20% of its traffic; shift it first"):
        await registry.retire("hr", v2, actor="ops")

    adapter = await registry.promote("hr", v2, actor="ops")
    assert (adapter.traffic, adapter.main_version) == ({v2: 100}, v2)
    assert registry.version("hr", v1).status is VersionStatus.STAGED

    retired = await registry.retire("hr", v1, actor="ops")
    assert retired.status is VersionStatus.RETIRED
    with pytest.raises(ModelNotFoundError, match="retired"):
        registry.resolve(f"hr@{v1}")
    with pytest.raises(AdapterError, match="retired and cannot get traffic"):
        await registry.set_traffic("hr", {v1: 50, v2: 50}, actor="ops")
    with pytest.raises(AdapterError, match="retired"):
        await registry.promote("hr", v1, actor="ops")
    actions = [(e.actor, e.action) for e in reversed(registry.audit_log("hr"))]
    assert actions == [
        ("ops", "register"),
        ("ops", "register"),
        ("ops", "set_traffic"),
        ("ops", "promote"),
        ("ops", "retire"),
    ]
    promote = registry.audit_log("hr")[1]
    assert promote.before["traffic"] == {v1: 80, v2: 20}
    assert promote.after["traffic"] == {v2: 100}


async def test_retire_unloads_and_reregistering_restores(
    registry: AdapterRegistry, engine: FakeEngine, folders: list[Path]
) -> None:
    v1 = (await registry.register(folders[0], name="hr", actor="ops")).version.version
    v2 = (await registry.register(folders[1], name="hr", actor="ops")).version.version
    await registry.retire("hr", v2, actor="ops")
    assert engine.loaded_adapters() == [f"hr@{v1}"]
    restored = await registry.register(folders[1], name="hr", actor="ops")
    assert not restored.created
    assert restored.version.status is VersionStatus.STAGED
    assert engine.loaded_adapters() == sorted([f"hr@{v1}", f"hr@{v2}"])


async def test_unknown_models_name_what_exists(
    registry: AdapterRegistry, folders: list[Path]
) -> None:
    await registry.register(folders[0], name="hr", actor="ops")
    with pytest.raises(ModelNotFoundError, match="Available models: SmolLM2-135M-Instruct, hr"):
        registry.resolve("finance")
    with pytest.raises(ModelNotFoundError, match="not registered"):
        registry.resolve("hr@000000000000")


async def test_assignment_is_sticky_per_user(
    registry: AdapterRegistry, folders: list[Path]
) -> None:
    v1 = (await registry.register(folders[0], name="hr", actor="ops")).version.version
    v2 = (await registry.register(folders[1], name="hr", actor="ops")).version.version
    await registry.set_traffic("hr", {v1: 50, v2: 50}, actor="ops")
    for user in ("alice", "bob", "carol"):
        seen = {_picked(registry, user) for _ in range(1000)}
        assert len(seen) == 1


async def test_an_80_20_split_holds_over_10000_users(
    registry: AdapterRegistry, folders: list[Path]
) -> None:
    v1 = (await registry.register(folders[0], name="hr", actor="ops")).version.version
    v2 = (await registry.register(folders[1], name="hr", actor="ops")).version.version
    await registry.set_traffic("hr", {v1: 80, v2: 20}, actor="ops")
    counts = Counter(_picked(registry, f"user-{i}") for i in range(10_000))
    assert abs(counts[v2] / 10_000 - 0.20) <= 0.03
    anonymous = Counter(_picked(registry, None) for _ in range(10_000))
    assert abs(anonymous[v2] / 10_000 - 0.20) <= 0.03


async def test_a_new_split_reshuffles_users_once(
    registry: AdapterRegistry, folders: list[Path]
) -> None:
    v1 = (await registry.register(folders[0], name="hr", actor="ops")).version.version
    v2 = (await registry.register(folders[1], name="hr", actor="ops")).version.version
    await registry.set_traffic("hr", {v1: 50, v2: 50}, actor="ops")
    first = [_picked(registry, f"u{i}") for i in range(400)]
    await registry.set_traffic("hr", {v1: 60, v2: 40}, actor="ops")
    await registry.set_traffic("hr", {v1: 50, v2: 50}, actor="ops")
    second = [_picked(registry, f"u{i}") for i in range(400)]
    assert first != second  # a new experiment id salts the hash


async def test_a_version_the_engine_cannot_load_is_refused(
    registry: AdapterRegistry,
    engine: FakeEngine,
    folders: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await registry.register(folders[0], name="hr", actor="ops")
    before = _snapshot(registry, tmp_path / "data")

    async def broken(adapter: object) -> None:
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(engine, "add_adapter", broken)
    with pytest.raises(AdapterError, match="engine could not load .*CUDA out of memory"):
        await registry.register(folders[1], name="hr", actor="ops")
    assert _snapshot(registry, tmp_path / "data") == before


@pytest.mark.parametrize("step", ["fill", "publish", "commit"])
async def test_a_failure_at_any_step_leaves_the_previous_state(
    registry: AdapterRegistry,
    engine: FakeEngine,
    folders: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    await registry.register(folders[0], name="hr", actor="ops")
    before = _snapshot(registry, tmp_path / "data")
    loaded = engine.loaded_adapters()
    target = {
        "fill": (AdapterFiles, "copy_folder"),
        "publish": (AdapterFiles, "publish"),
        "commit": (SQLiteRegistryStore, "_insert_audit"),
    }[step]
    original = getattr(*target)

    def fail_after(*args: object, **kwargs: object) -> object:
        original(*args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(*target, fail_after)
    with pytest.raises(OSError, match="disk full"):
        await registry.register(folders[1], name="hr", actor="ops")
    monkeypatch.undo()
    assert _snapshot(registry, tmp_path / "data") == before
    assert engine.loaded_adapters() == loaded
    assert (await registry.register(folders[1], name="hr", actor="ops")).created


CRASH_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from loramux.adapters.filestore import AdapterFiles
    from loramux.adapters.registry import AdapterRegistry
    from loramux.adapters.sqlite_store import SQLiteRegistryStore
    from loramux.adapters.validation import spec_from_hf_config

    data, source, step = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    target = {
        "fill": (AdapterFiles, "copy_folder"),
        "publish": (AdapterFiles, "publish"),
        "commit": (SQLiteRegistryStore, "_insert_audit"),
    }[step]
    original = getattr(*target)

    def crash(*args, **kwargs):
        original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    setattr(*target, crash)
    base = spec_from_hf_config(CONFIG, name="SmolLM2-135M-Instruct")

    async def main():
        registry = AdapterRegistry.open(data, base)
        await registry.start()
        await registry.register(source, name="hr", actor="ops")

    asyncio.run(main())
    """
).replace("CONFIG", json.dumps(SMOLLM2_CONFIG))


@pytest.mark.parametrize("step", ["fill", "publish", "commit"])
async def test_sigkill_mid_registration_leaves_the_previous_state(
    tmp_path: Path, folders: list[Path], step: str
) -> None:
    data = tmp_path / "data"
    reg = await _open(data)
    first = (await reg.register(folders[0], name="hr", actor="ops")).version
    before = _snapshot(reg, data)
    await reg.close()

    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(data), str(folders[1]), step],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert _files(data) != before[2]  # the crash did leave files behind

    reopened = await _open(data)
    assert _snapshot(reopened, data) == before
    assert reopened.get("hr")[0].traffic == {first.version: 100}
    assert not any((data / "adapters" / ".staging").iterdir())
    assert (await reopened.register(folders[1], name="hr", actor="ops")).created
    await reopened.close()


async def test_changes_from_another_process_are_picked_up(
    registry: AdapterRegistry, engine: FakeEngine, folders: list[Path], tmp_path: Path
) -> None:
    v1 = (await registry.register(folders[0], name="hr", actor="ops")).version.version
    cli = await _open(tmp_path / "data")  # the CLI: same data dir, no engine
    v2 = (await cli.register(folders[1], name="hr", actor="cli")).version.version
    await cli.set_traffic("hr", {v1: 50, v2: 50}, actor="cli")
    await cli.close()
    assert await registry.refresh()
    assert registry.get("hr")[0].traffic == {v1: 50, v2: 50}
    found = registry.resolve(f"hr@{v2}")
    assert found is not None
    assert found.key == f"hr@{v2}"
    assert f"hr@{v2}" not in engine.loaded_adapters()  # registered is not loaded: loads on use
    assert not await registry.refresh()


async def test_a_stale_change_is_refused(tmp_path: Path, folders: list[Path]) -> None:
    data = tmp_path / "data"
    one, two = await _open(data), await _open(data)
    v1 = (await one.register(folders[0], name="hr", actor="a")).version.version
    v2 = (await one.register(folders[1], name="hr", actor="a")).version.version
    await two.refresh()
    await one.set_traffic("hr", {v1: 90, v2: 10}, actor="a")
    adapter, versions = two.get("hr")  # stale view
    with pytest.raises(AdapterConflictError, match="changed by someone else"):
        await two._change_traffic(  # private on purpose: drives the race without timing
            adapter, versions, {v2: 100}, v2, actor="b", action="promote", reason=""
        )
    await one.close()
    await two.close()


def test_every_store_kind_the_config_accepts_is_in_the_store_tables() -> None:
    from typing import get_args

    from loramux.adapters.store import STORES
    from loramux.keys.store import KEY_STORES

    kinds = set(get_args(RegistrySettings.model_fields["store"].annotation))
    assert kinds == set(STORES) == set(KEY_STORES)


def test_the_database_is_migrated_and_newer_schemas_are_refused(tmp_path: Path) -> None:
    from loramux.errors import ConfigError

    path = tmp_path / DB_FILE
    SQLiteRegistryStore(path).close()
    import sqlite3

    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(ConfigError, match="newer than this loramux"):
        SQLiteRegistryStore(path)


@pytest.mark.slow
@pytest.mark.skipif(
    not (REPO / "demo" / "adapters" / "hr" / "adapter_model.safetensors").is_file(),
    reason="demo adapter absent",
)
async def test_a_version_registered_while_serving_answers_on_the_hf_engine(
    base_model_dir: Path, tmp_path: Path
) -> None:
    from loramux.config import EngineConfig, HFEngineConfig
    from loramux.serve.engine import generate
    from loramux.serve.hf import HFEngine
    from loramux.serve.types import GenerationRequest, SamplingParams
    from loramux.types import ChatMessage

    base = spec_from_hf_config(base_model_dir, name="SmolLM2-135M-Instruct")
    assert base.module_shapes == BASE.module_shapes
    engine = HFEngine(
        base_model_dir, EngineConfig(max_batch_size=4, hf=HFEngineConfig(max_wait_ms=5))
    )
    await engine.start()
    try:
        registry = AdapterRegistry.open(tmp_path / "data", base, engine=engine)
        await registry.start()
        await registry.register(REPO / "demo" / "adapters" / "hr", name="hr", actor="ops")
        version = registry.resolve("hr", "alice")
        assert version is not None
        result = await generate(
            engine,
            GenerationRequest(
                request_id="r1",
                sampling=SamplingParams(max_tokens=4, temperature=0.0),
                messages=(ChatMessage("user", "How many vacation days do I get?"),),
                adapter=version.ref(),
            ),
        )
        assert result.completion_tokens == 4
        assert engine.loaded_adapters() == [version.key]
        await registry.close()
    finally:
        await engine.stop()


async def test_a_change_decided_from_an_old_revision_is_refused(
    registry: AdapterRegistry, folders: list[Path]
) -> None:
    v1 = (await registry.register(folders[0], name="hr", actor="a")).version.version
    v2 = (await registry.register(folders[1], name="hr", actor="a")).version.version
    seen = registry.get("hr")[0].revision
    await registry.set_traffic("hr", {v1: 50, v2: 50}, actor="a", revision=seen)
    for stale in (
        registry.set_traffic("hr", {v2: 100}, actor="b", revision=seen),
        registry.promote("hr", v2, actor="b", revision=seen),
        registry.delete("hr", actor="b", force=True, revision=seen),
    ):
        with pytest.raises(AdapterConflictError, match="revision") as info:
            await stale
        assert info.value.param == "revision"
    assert registry.get("hr")[0].traffic == {v1: 50, v2: 50}
    now = registry.get("hr")[0].revision
    assert (await registry.promote("hr", v2, actor="b", revision=now)).main_version == v2

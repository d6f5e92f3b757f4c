"""Day-2 operations on the real registry: roll back to the previous main version (from the audit
log), delete an adapter with its files (refused while it serves traffic unless forced)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loramux.adapters.registry import AdapterRegistry
from loramux.config import RegistrySettings
from loramux.errors import AdapterConflictError, AdapterNotFoundError, ModelNotFoundError
from loramux.serve.fake import FakeEngine
from tests.builders import SMOLLM2_SPEC, write_lora_folder


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def _registry(
    data: Path, settings: RegistrySettings | None = None, clock: Clock | None = None
) -> tuple[AdapterRegistry, FakeEngine]:
    engine = FakeEngine()
    await engine.start()
    registry = AdapterRegistry.open(data, SMOLLM2_SPEC, settings, engine=engine)
    if clock is not None:
        registry.clock = clock
        registry.experiments.clock = clock
    await registry.start()
    return registry, engine


async def test_rollback_returns_to_the_previous_main_version(tmp_path: Path) -> None:
    registry, _ = await _registry(tmp_path / "data")
    folders = [write_lora_folder(tmp_path / f"v{i}", seed=i) for i in range(3)]
    v = [(await registry.register(f, name="hr", actor="ops")).version.version for f in folders]
    with pytest.raises(AdapterConflictError, match="nothing to roll back"):
        await registry.rollback("hr", actor="ops")
    await registry.promote("hr", v[1], actor="ops")
    await registry.set_traffic("hr", {v[1]: 90, v[2]: 10}, actor="ops")  # main stays v1
    await registry.promote("hr", v[2], actor="ops")
    rolled = await registry.rollback("hr", actor="lead")
    assert (rolled.main_version, dict(rolled.traffic)) == (v[1], {v[1]: 100})
    entry = registry.audit_log("hr")[0]
    assert (entry.action, entry.actor, entry.version) == ("rollback", "lead", v[1])
    again = await registry.rollback("hr", actor="lead")  # the previous main is now v2
    assert again.main_version == v[2]
    await registry.retire("hr", v[1], actor="ops")
    with pytest.raises(AdapterConflictError, match="retired"):
        await registry.rollback("hr", actor="ops")
    await registry.close()


async def test_delete_is_refused_while_serving_unless_forced(tmp_path: Path) -> None:
    clock = Clock()
    settings = RegistrySettings(delete_idle_s=600)
    registry, engine = await _registry(tmp_path / "data", settings, clock)
    a = write_lora_folder(tmp_path / "a", seed=1)
    b = write_lora_folder(tmp_path / "b", seed=2)
    v1 = (await registry.register(a, name="hr", actor="ops")).version.version
    await registry.register(b, name="hr", actor="ops")
    await registry.register(write_lora_folder(tmp_path / "c", seed=3), name="it", actor="ops")
    assignment = registry.assign("hr", "u1")
    assert assignment is not None
    registry.experiments.record("r1", assignment, total_s=0.1)
    files = tmp_path / "data" / "adapters" / "hr"
    assert files.is_dir()

    with pytest.raises(AdapterConflictError, match="delete_idle_s") as info:
        await registry.delete("hr", actor="ops")
    assert "--force" in info.value.message
    clock.now += 601  # idle long enough: allowed without force
    deleted = await registry.delete("hr", actor="ops")
    assert deleted.main_version == v1
    assert not files.exists()
    assert [a.name for a in registry.adapters()] == ["it"]
    assert all(not key.startswith("hr@") for key in engine.loaded_adapters())
    with pytest.raises(ModelNotFoundError):
        registry.assign("hr", "u1")
    assert registry.audit_log("hr")[0].action == "delete"
    await registry.close()

    reopened, _ = await _registry(tmp_path / "data")  # gone for good, and the name is free
    with pytest.raises(AdapterNotFoundError):
        reopened.get("hr")
    again = await reopened.register(a, name="hr", actor="ops")
    assert again.created
    assert again.adapter.main_version == v1
    with pytest.raises(AdapterConflictError, match="nothing to roll back"):
        await reopened.rollback("hr", actor="ops")  # history before the delete is not used
    await reopened.close()


async def test_force_deletes_an_adapter_that_just_served(tmp_path: Path) -> None:
    registry, _ = await _registry(tmp_path / "data")
    await registry.register(write_lora_folder(tmp_path / "a", seed=1), name="hr", actor="ops")
    assignment = registry.assign("hr", "u1")
    assert assignment is not None
    registry.experiments.record("r1", assignment, total_s=0.1)
    registry.experiments.flush()  # in the store this time, not only in memory
    with pytest.raises(AdapterConflictError):
        await registry.delete("hr", actor="ops")
    await registry.delete("hr", actor="ops", force=True)
    assert registry.adapters() == []
    assert registry.store.find_request("r1") is None
    entry = registry.audit_log("hr")[0]
    assert entry.after == {"deleted": True, "forced": True}
    await registry.close()


@pytest.mark.parametrize("seed", ["0", "12345"])
def test_the_sticky_bucket_is_the_same_in_every_process(seed: str) -> None:
    """Gateways agree on a user's version without talking: the bucket is a pure function of
    (experiment, user), not of Python's per-process string hash."""
    import os
    import subprocess
    import sys

    from loramux.adapters.traffic import user_bucket

    users = [f"user-{i}" for i in range(200)]
    code = (
        "from loramux.adapters.traffic import user_bucket; "
        f"print([user_bucket(u, 'exp1') for u in {users!r}])"
    )
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert out.strip() == str([user_bucket(u, "exp1") for u in users])

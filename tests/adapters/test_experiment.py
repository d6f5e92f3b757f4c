"""A/B results: statistics against hand-computed values, verdicts, persistence, auto actions."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from loramux.adapters.ab_stats import msprt, two_proportion_z_test, wilson_interval
from loramux.adapters.experiment import Action, ArmStats, Reservoir, recommend
from loramux.adapters.records import VersionStatus
from loramux.adapters.registry import AdapterRegistry
from loramux.adapters.traffic import TrafficSplit, check_weights
from loramux.config import ExperimentSettings, RegistrySettings
from loramux.errors import AdapterError, UnknownRequestError
from loramux.serve.fake import FakeEngine
from tests.builders import SMOLLM2_SPEC, write_lora_folder

BASE = SMOLLM2_SPEC
SETTINGS = ExperimentSettings(min_ratings=100, min_requests=200)


def test_z_test_matches_a_hand_computed_example() -> None:
    # challenger 120 up of 200, main 100 of 200: pooled p = 0.55,
    # se = sqrt(0.55 * 0.45 * (1/200 + 1/200)) = 0.0497494, z = 0.1 / se = 2.01008,
    # two-sided p = 2 * (1 - Phi(2.01008)) = 0.04442;
    # Wald CI of the difference: 0.1 +- 1.959964 * sqrt(.6*.4/200 + .5*.5/200) = 0.1 +- 0.097013.
    z, p, diff, (low, high) = two_proportion_z_test(120, 200, 100, 200)
    assert z == pytest.approx(2.01008, abs=1e-5)
    assert p == pytest.approx(0.04442, abs=1e-5)
    assert diff == pytest.approx(0.1)
    assert low == pytest.approx(0.002987, abs=1e-6)
    assert high == pytest.approx(0.197013, abs=1e-6)


def test_wilson_interval_matches_a_hand_computed_example() -> None:
    # 120/200 at 95%: centre (0.6 + z^2/400) / (1 + z^2/200) = 0.598115,
    # half-width z * sqrt(0.24/200 + z^2/160000) / (1 + z^2/200) = 0.067278.
    low, high = wilson_interval(120, 200)
    assert low == pytest.approx(0.530837, abs=1e-5)
    assert high == pytest.approx(0.665393, abs=1e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0)


def test_z_test_degenerate_cases() -> None:
    assert two_proportion_z_test(0, 0, 5, 10)[1] == 1.0
    assert two_proportion_z_test(10, 10, 10, 10)[:2] == (0.0, 1.0)


def test_msprt_matches_a_hand_computed_example() -> None:
    # challenger 120 up of 200, main 100 of 200, tau = 0.05: V = .6*.4/200 + .5*.5/200 = 0.00245,
    # Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 * 0.1^2 / (2 V (V + tau^2)))
    #        = sqrt(0.00245 / 0.00495) * exp(0.000025 / 0.000024255)
    #        = 0.703526 * 2.803085 = 1.97204;
    # half-width at alpha .05: sqrt(V (V + tau^2) / tau^2 * (2 ln 20 + ln(0.00495 / 0.00245)))
    #        = sqrt(0.0048510 * (5.991465 + 0.703284)) = 0.180212.
    result = msprt(120, 200, 100, 200, mixing_sd=0.05, alpha=0.05)
    assert math.exp(result.log_lr) == pytest.approx(1.97204, abs=1e-4)
    assert result.half_width == pytest.approx(0.180212, abs=1e-5)
    assert result.p_value() == pytest.approx(1 / 1.97204, abs=1e-4)
    assert not result.rejects(0.05)  # the z-test's p = 0.044 above: a peek it no longer trusts
    assert msprt(0, 0, 5, 10, mixing_sd=0.05, alpha=0.05).p_value() == 1.0


def _arm(version: str, up: int, down: int, requests: int = 1000, errors: int = 0) -> ArmStats:
    n = up + down
    return ArmStats(
        version=version,
        weight=50,
        requests=requests,
        errors=errors,
        prompt_tokens=0,
        completion_tokens=0,
        ttft=None,
        total=None,
        up=up,
        down=down,
        up_rate=up / n if n else None,
        up_rate_ci=wilson_interval(up, n) if n else None,
    )


@pytest.mark.parametrize(
    ("main", "challengers", "action", "challenger"),
    [
        (_arm("a", 100, 100), [], Action.NO_EXPERIMENT, None),
        (_arm("a", 50, 20), [_arm("b", 90, 10)], Action.KEEP_TESTING, "b"),
        (_arm("a", 500, 500), [_arm("b", 600, 400)], Action.PROMOTE, "b"),
        (_arm("a", 600, 400), [_arm("b", 500, 500)], Action.ROLL_BACK, "b"),
        (_arm("a", 500, 500), [_arm("b", 525, 475)], Action.KEEP_TESTING, "b"),
        # a fixed-horizon z-test says p = 0.044 here; the sequential test wants more evidence
        (_arm("a", 100, 100), [_arm("b", 120, 80)], Action.KEEP_TESTING, "b"),
        (_arm("a", 10, 10, errors=5), [_arm("b", 10, 10, errors=60)], Action.ROLL_BACK, "b"),
        # 284/500 against 230/500: Lambda = 36.7 >= 20 alone, but two challengers (Bonferroni)
        # need 40
        (_arm("a", 230, 270), [_arm("b", 284, 216)], Action.PROMOTE, "b"),
        (_arm("a", 230, 270), [_arm("b", 284, 216), _arm("c", 10, 90)], Action.KEEP_TESTING, "b"),
    ],
    ids=[
        "alone",
        "few-ratings",
        "better",
        "worse",
        "no-difference",
        "peeking",
        "errors",
        "one-challenger",
        "bonferroni",
    ],
)
def test_recommendations(
    main: ArmStats, challengers: list[ArmStats], action: Action, challenger: str | None
) -> None:
    rec, test = recommend(main, challengers, SETTINGS)
    assert (rec.action, rec.challenger) == (action, challenger)
    if action in (Action.PROMOTE, Action.ROLL_BACK) and "error" not in rec.reason:
        assert test is not None
        assert test.p_value < 0.05
        assert test.likelihood_ratio >= test.threshold
        assert test.diff_ci[0] > 0 or test.diff_ci[1] < 0  # the sequence excludes 0


def test_reservoir_is_bounded_and_keeps_quantiles() -> None:
    reservoir = Reservoir(size=100)
    for i in range(10_000):
        reservoir.add(i / 10_000)
    latency = reservoir.latency()
    assert latency is not None
    assert latency.samples == 100
    assert latency.p50_ms == pytest.approx(500, abs=150)
    assert latency.p95_ms == pytest.approx(950, abs=60)


def test_traffic_split_picks_by_cumulative_weights() -> None:
    split = TrafficSplit.from_weights({"b": 20, "a": 80, "c": 0}, "e1")
    assert [split.pick(x) for x in (0, 79, 80, 99)] == ["a", "a", "b", "b"]
    statuses = {"a": VersionStatus.ACTIVE, "b": VersionStatus.STAGED}
    assert check_weights("hr", {"a": 100, "b": 0}, statuses) == {"a": 100}
    with pytest.raises(AdapterError, match="integer"):
        check_weights("hr", {"a": True, "b": 99}, statuses)


async def _registry(data: Path, settings: RegistrySettings | None = None) -> AdapterRegistry:
    engine = FakeEngine()
    await engine.start()
    registry = AdapterRegistry.open(data, BASE, settings, engine=engine)
    await registry.start()
    return registry


async def _two_versions(registry: AdapterRegistry, tmp_path: Path) -> tuple[str, str]:
    a = write_lora_folder(tmp_path / "a", seed=1)
    b = write_lora_folder(tmp_path / "b", seed=2)
    v1 = (await registry.register(a, name="hr", actor="ops")).version.version
    v2 = (await registry.register(b, name="hr", actor="ops")).version.version
    await registry.set_traffic("hr", {v1: 50, v2: 50}, actor="ops")
    return v1, v2


async def _serve(registry: AdapterRegistry, users: int, up_rate: dict[str, float]) -> None:
    """Serve one request per user and rate it: the first `up_rate[v]` share of each version's
    requests get thumbs up (deterministic)."""
    seen: dict[str, int] = {}
    for i in range(users):
        assignment = registry.assign("hr", f"user{i}")
        assert assignment is not None
        version = assignment.version.version
        registry.experiments.record(
            f"req{i}", assignment, ttft_s=0.01 * (i % 10), total_s=0.1, completion_tokens=5
        )
        k = seen[version] = seen.get(version, 0) + 1
        await registry.record_feedback(
            f"req{i}", "up" if k % 10 < 10 * up_rate[version] else "down"
        )


async def test_experiment_results_survive_a_restart(tmp_path: Path) -> None:
    registry = await _registry(tmp_path / "data")
    v1, v2 = await _two_versions(registry, tmp_path)
    await _serve(registry, 400, {v1: 0.5, v2: 0.7})
    report = registry.experiment("hr")
    arms = {a.version: a for a in report.arms}
    assert sum(a.requests for a in arms.values()) == 400
    assert sum(a.completion_tokens for a in arms.values()) == 2000
    assert arms[v2].up_rate == pytest.approx(0.7, abs=0.05)
    ttft = arms[v1].ttft
    assert ttft is not None
    assert ttft.p95_ms == pytest.approx(90, abs=1)
    assert report.main_version == v1
    await registry.close()

    reopened = await _registry(tmp_path / "data")
    again = {a.version: a for a in reopened.experiment("hr").arms}
    assert {v: (a.requests, a.up, a.down) for v, a in again.items()} == {
        v: (a.requests, a.up, a.down) for v, a in arms.items()
    }
    await reopened.record_feedback("req0", "down")  # still attributable after the restart
    with pytest.raises(UnknownRequestError, match="x-request-id"):
        await reopened.record_feedback("never-served", "up")
    await reopened.close()


async def test_a_new_split_starts_a_new_experiment(tmp_path: Path) -> None:
    registry = await _registry(tmp_path / "data")
    v1, v2 = await _two_versions(registry, tmp_path)
    await _serve(registry, 50, {v1: 0.5, v2: 0.5})
    await registry.set_traffic("hr", {v1: 80, v2: 20}, actor="ops")
    report = registry.experiment("hr")
    assert all(a.requests == 0 and a.up + a.down == 0 for a in report.arms)
    assert report.recommendation.action is Action.KEEP_TESTING
    await registry.close()


async def test_auto_promote_acts_and_is_audited(tmp_path: Path) -> None:
    settings = RegistrySettings(
        experiment=ExperimentSettings(min_ratings=100, auto_promote=True, auto_rollback=True)
    )
    registry = await _registry(tmp_path / "data", settings)
    v1, v2 = await _two_versions(registry, tmp_path)
    await _serve(registry, 600, {v1: 0.4, v2: 0.8})
    adapter = registry.get("hr")[0]
    assert (adapter.traffic, adapter.main_version) == ({v2: 100}, v2)
    entry = registry.audit_log("hr")[0]
    assert (entry.actor, entry.action) == ("auto-experiment", "promote")
    assert entry.after["reason"].startswith("promote: thumbs-up")
    await registry.close()


async def test_auto_rollback_moves_traffic_back_to_main(tmp_path: Path) -> None:
    settings = RegistrySettings(
        experiment=ExperimentSettings(min_ratings=100, auto_promote=False, auto_rollback=True)
    )
    registry = await _registry(tmp_path / "data", settings)
    v1, v2 = await _two_versions(registry, tmp_path)
    await _serve(registry, 600, {v1: 0.8, v2: 0.3})
    adapter = registry.get("hr")[0]
    assert (adapter.traffic, adapter.main_version) == ({v1: 100}, v1)
    entry = registry.audit_log("hr")[0]
    assert (entry.actor, entry.action) == ("auto-experiment", "set_traffic")
    assert math.isclose(len(registry.audit_log("hr")), 4)
    await registry.close()

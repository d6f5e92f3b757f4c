"""A/B experiment results per adapter version, and what to do about them.

Per (adapter, version, experiment): requests, errors, tokens (counted in memory, flushed to the
store in batches), time to first token and total latency (p50/p95 from a bounded reservoir,
in memory only), and thumbs up/down feedback (stored at once, keyed by request id).

The results are looked at after every rating, so the test must stay valid however often it is
looked at: a fixed-horizon z-test re-run after each rating ("peeking") promotes an A/A
challenger far more often than its nominal alpha (bench/bench_ab.py measures it). The thumbs-up
rate of the best challenger is compared with the main version's by a mixture sequential
probability ratio test (mSPRT, Johari et al., "Always valid inference", 2017) on the difference
of proportions, with a normal mixing prior N(0, tau^2): its likelihood ratio Lambda_n crosses
1/alpha with probability at most alpha at ANY time under "no difference", so a verdict may be
acted on the moment it appears. 1/Lambda is the always-valid p-value, and the values of the
difference the test cannot reject form a confidence sequence. Each rate gets a Wilson interval
(for display). `recommend` says: keep testing, promote, or roll back, once both sides have
`min_ratings`. A challenger whose error rate is above the main version's by the same sequential
test (its own prior, `error_mixing_sd`) is rolled back whatever its ratings.
"""

from __future__ import annotations

import math
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from loramux.adapters.ab_stats import msprt, wilson_interval
from loramux.adapters.records import (
    PINNED,
    AdapterRecord,
    FeedbackRecord,
    Rating,
    RequestRecord,
    UsageDelta,
)
from loramux.adapters.store import RegistryStore
from loramux.adapters.traffic import Assignment
from loramux.config import ExperimentSettings
from loramux.errors import UnknownRequestError


class Action(StrEnum):
    NO_EXPERIMENT = "no_experiment"
    KEEP_TESTING = "keep_testing"
    PROMOTE = "promote"
    ROLL_BACK = "roll_back"


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float
    samples: int


@dataclass(frozen=True)
class ArmStats:
    """One version's results within the current experiment."""

    version: str
    weight: int
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    ttft: Latency | None
    total: Latency | None
    up: int
    down: int
    up_rate: float | None
    up_rate_ci: tuple[float, float] | None

    @property
    def ratings(self) -> int:
        return self.up + self.down


@dataclass(frozen=True)
class SequentialTest:
    """The mSPRT of challenger minus main (thumbs-up rate), valid under continuous monitoring."""

    challenger: str
    main: str
    diff: float
    diff_ci: tuple[float, float]
    """Confidence sequence of the difference at the test's level (valid at every look)."""
    likelihood_ratio: float
    """Lambda_n, the mixture likelihood ratio against "no difference"; a verdict when it is at
    least `threshold`."""
    threshold: float
    """1 / alpha (alpha split over the challengers)."""
    p_value: float
    """Always-valid p-value: min(1, 1 / Lambda_n)."""
    method: str = "msprt"


@dataclass(frozen=True)
class Recommendation:
    action: Action
    reason: str
    challenger: str | None = None


@dataclass(frozen=True)
class ExperimentReport:
    adapter: str
    experiment_id: str | None
    main_version: str | None
    arms: tuple[ArmStats, ...]
    test: SequentialTest | None
    recommendation: Recommendation


def recommend(
    main: ArmStats | None, challengers: Sequence[ArmStats], settings: ExperimentSettings
) -> tuple[Recommendation, SequentialTest | None]:
    """Judge an experiment: the best challenger against the main version, by the mSPRT
    (valid however often it is called).

    Returns:
        The recommendation and the test it rests on (None when there was none to run).
    """
    if main is None or not challengers:
        return Recommendation(Action.NO_EXPERIMENT, "only one version gets traffic"), None
    alpha = (1 - settings.confidence) / len(challengers)
    for arm in challengers:
        if min(arm.requests, main.requests) < settings.min_requests:
            continue
        errors = msprt(
            arm.errors,
            arm.requests,
            main.errors,
            main.requests,
            mixing_sd=settings.error_mixing_sd,
            alpha=alpha,
        )
        if errors.diff > 0 and errors.rejects(alpha):
            return (
                Recommendation(
                    Action.ROLL_BACK,
                    f"error rate {arm.errors / arm.requests:.1%} against "
                    f"{main.errors / main.requests:.1%} for the main version "
                    f"(always-valid p={errors.p_value():.3g})",
                    arm.version,
                ),
                None,
            )
    rated = [arm for arm in challengers if arm.ratings >= settings.min_ratings]
    if not rated or main.ratings < settings.min_ratings:
        best = max(challengers, key=lambda a: a.ratings)
        return (
            Recommendation(
                Action.KEEP_TESTING,
                f"need {settings.min_ratings} ratings per version; the main version has "
                f"{main.ratings}, challenger {best.version} has {best.ratings}",
                best.version,
            ),
            None,
        )
    best = max(rated, key=lambda a: (a.up / a.ratings, a.ratings))
    result = msprt(
        best.up, best.ratings, main.up, main.ratings, mixing_sd=settings.mixing_sd, alpha=alpha
    )
    d, half = result.diff, result.half_width
    p = result.p_value()
    test = SequentialTest(
        challenger=best.version,
        main=main.version,
        diff=d,
        diff_ci=(max(-1.0, d - half), min(1.0, d + half)),
        likelihood_ratio=math.exp(min(result.log_lr, 700.0)),
        threshold=1 / alpha,
        p_value=p,
    )
    rates = f"thumbs-up {best.up / best.ratings:.1%} against {main.up / main.ratings:.1%}"
    if not result.rejects(alpha):
        reason = f"no significant difference yet ({rates}, always-valid p={p:.3g} >= {alpha:.3g})"
        return Recommendation(Action.KEEP_TESTING, reason, best.version), test
    if d > 0:
        return Recommendation(
            Action.PROMOTE, f"{rates} (always-valid p={p:.3g})", best.version
        ), test
    return Recommendation(Action.ROLL_BACK, f"{rates} (always-valid p={p:.3g})", best.version), test


class Reservoir:
    """A uniform sample of at most `size` values (Vitter's algorithm R)."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.seen = 0
        self.values: list[float] = []
        self._rng = random.Random(seed)

    def add(self, value: float) -> None:
        self.seen += 1
        if len(self.values) < self.size:
            self.values.append(value)
            return
        slot = self._rng.randrange(self.seen)
        if slot < self.size:
            self.values[slot] = value

    def latency(self) -> Latency | None:
        if not self.values:
            return None
        ordered = sorted(self.values)
        return Latency(
            p50_ms=1000 * _quantile(ordered, 0.50),
            p95_ms=1000 * _quantile(ordered, 0.95),
            samples=len(ordered),
        )


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of sorted values."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


_Key = tuple[str, str, str]
PRUNE_EVERY_S = 3600.0
"""How often request records past the feedback retention are deleted."""


class ExperimentTracker:
    """Collects per-request results and feedback; reports per version."""

    def __init__(
        self,
        store: RegistryStore,
        settings: ExperimentSettings,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self._lock = threading.Lock()
        self._pending_requests: list[RequestRecord] = []
        self._pending_usage: dict[_Key, list[int]] = {}
        self._recent: OrderedDict[str, RequestRecord] = OrderedDict()
        self._ttft: dict[_Key, Reservoir] = {}
        self._total: dict[_Key, Reservoir] = {}
        self._pruned_at = 0.0

    def record(
        self,
        request_id: str,
        assignment: Assignment,
        *,
        ttft_s: float | None = None,
        total_s: float | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        error: bool = False,
        key_id: str | None = None,
    ) -> None:
        """Record one served request (call once, when it ended). No I/O, except a forced
        write when the periodic flush falls far behind.

        Args:
            request_id: the server's id of the request (never one the client chose).
            key_id: the API key that made it; only that key (or admin) may rate it.
        """
        v = assignment.version
        key = (v.name, v.version, assignment.experiment_id)
        row = RequestRecord(
            request_id, v.name, v.version, assignment.experiment_id, self.clock(), key_id
        )
        with self._lock:
            self._pending_requests.append(row)
            self._recent[request_id] = row
            while len(self._recent) > self.settings.remember_requests:
                self._recent.popitem(last=False)
            usage = self._pending_usage.setdefault(key, [0, 0, 0, 0])
            usage[0] += 1
            usage[1] += int(error)
            usage[2] += prompt_tokens
            usage[3] += completion_tokens
            if ttft_s is not None:
                self._reservoir(self._ttft, key).add(ttft_s)
            if total_s is not None and not error:
                self._reservoir(self._total, key).add(total_s)
        if len(self._pending_requests) >= 4 * self.settings.flush_every:
            self.flush()  # the periodic flush (`AdapterRegistry.watch`) is not keeping up

    def _reservoir(self, table: dict[_Key, Reservoir], key: _Key) -> Reservoir:
        found = table.get(key)
        if found is None:
            found = table[key] = Reservoir(self.settings.reservoir_size, seed=len(table))
        return found

    @property
    def pending(self) -> int:
        """Requests recorded in memory and not yet written to the store."""
        return len(self._pending_requests)

    def flush(self) -> None:
        """Write buffered request records and usage counters to the store (one transaction)."""
        with self._lock:
            requests, self._pending_requests = self._pending_requests, []
            usage, self._pending_usage = self._pending_usage, {}
        if not requests and not usage:
            return
        deltas = [UsageDelta(a, v, e, *counts) for (a, v, e), counts in usage.items()]
        try:
            self.store.save_usage(requests, deltas)
        except Exception:
            with self._lock:  # keep them for the next try
                self._pending_requests[:0] = requests
                for key, counts in usage.items():
                    merged = self._pending_usage.setdefault(key, [0, 0, 0, 0])
                    for i, c in enumerate(counts):
                        merged[i] += c
            raise
        now = self.clock()
        if now - self._pruned_at > PRUNE_EVERY_S:
            self._pruned_at = now
            self.store.prune_requests(now - self.settings.retention_s)

    def last_request_at(self, adapter: str) -> float | None:
        """When a request served by the adapter was last recorded (memory, then the store)."""
        with self._lock:
            times = [r.at for r in self._pending_requests if r.adapter == adapter]
            times += [r.at for r in self._recent.values() if r.adapter == adapter]
        stored = self.store.last_request_at(adapter)
        if stored is not None:
            times.append(stored)
        return max(times, default=None)

    def forget(self, adapter: str) -> None:
        """Drop what is buffered for a deleted adapter (so no flush writes it back)."""
        with self._lock:
            self._pending_requests = [r for r in self._pending_requests if r.adapter != adapter]
            self._pending_usage = {k: v for k, v in self._pending_usage.items() if k[0] != adapter}
            for request_id in [k for k, r in self._recent.items() if r.adapter == adapter]:
                del self._recent[request_id]
            for table in (self._ttft, self._total):
                for key in [k for k in table if k[0] == adapter]:
                    del table[key]

    def find(self, request_id: str) -> RequestRecord | None:
        """Which version served `request_id` (memory first, then the store)."""
        with self._lock:
            found = self._recent.get(request_id)
        return found if found is not None else self.store.find_request(request_id)

    def add_feedback(
        self, request_id: str, rating: Rating, comment: str = "", *, key_id: str | None = None
    ) -> FeedbackRecord:
        """Store a rating of a served request (a later rating of the same request replaces it).

        Args:
            request_id: the server's id of the rated request.
            rating: thumbs up or down.
            comment: free text.
            key_id: the API key that rates; only the key that made the request may rate it.
                None: any request (the admin key, or auth off).

        Raises:
            UnknownRequestError: no adapter-served request with that id is remembered, or it
                was made by another key (the same answer, so ids of others reveal nothing).
        """
        served = self.find(request_id)
        if served is None or (key_id is not None and served.key_id != key_id):
            days = self.settings.retention_s / 86400
            raise UnknownRequestError(
                f"no request {request_id!r} served by an adapter in the last {days:g} days; "
                "send the x-request-id response header of a response your key got from an "
                "adapter",
                param="request_id",
            )
        feedback = FeedbackRecord(
            request_id=request_id,
            adapter=served.adapter,
            version=served.version,
            experiment_id=served.experiment_id,
            rating=rating,
            comment=comment,
            at=self.clock(),
        )
        self.store.save_feedback(feedback)
        return feedback

    def report(self, adapter: AdapterRecord) -> ExperimentReport:
        """Results of the adapter's current experiment (versions with traffic) and a verdict."""
        self.flush()
        experiment = adapter.experiment_id or PINNED
        feedback = self.store.feedback_counts(adapter.name, experiment)
        usage = self.store.usage(adapter.name, experiment)
        arms = tuple(
            self._arm(adapter.name, experiment, version, weight, usage.get(version), feedback)
            for version, weight in sorted(adapter.traffic.items(), key=lambda kv: -kv[1])
        )
        main = next((a for a in arms if a.version == adapter.main_version), None)
        challengers = [a for a in arms if a is not main]
        recommendation, test = recommend(main, challengers, self.settings)
        return ExperimentReport(
            adapter=adapter.name,
            experiment_id=adapter.experiment_id,
            main_version=adapter.main_version,
            arms=arms,
            test=test,
            recommendation=recommendation,
        )

    def _arm(
        self,
        adapter: str,
        experiment: str,
        version: str,
        weight: int,
        usage: UsageDelta | None,
        feedback: Mapping[str, tuple[int, int]],
    ) -> ArmStats:
        up, down = feedback.get(version, (0, 0))
        key = (adapter, version, experiment)
        with self._lock:
            ttft = self._ttft[key].latency() if key in self._ttft else None
            total = self._total[key].latency() if key in self._total else None
        u = usage or UsageDelta(adapter, version, experiment)
        n = up + down
        return ArmStats(
            version=version,
            weight=weight,
            requests=u.requests,
            errors=u.errors,
            prompt_tokens=u.prompt_tokens,
            completion_tokens=u.completion_tokens,
            ttft=ttft,
            total=total,
            up=up,
            down=down,
            up_rate=up / n if n else None,
            up_rate_ci=wilson_interval(up, n, self.settings.confidence) if n else None,
        )


class TrafficControl(Protocol):
    """The registry's traffic changes, as automatic decisions use them."""

    async def promote(self, name: str, version: str, *, actor: str, reason: str = "") -> object: ...

    async def set_traffic(
        self, name: str, weights: Mapping[str, object], *, actor: str, reason: str = ""
    ) -> object: ...


AUTO_ACTOR = "auto-experiment"
"""Who the audit log names for automatic promotions and rollbacks."""


async def act_on(
    report: ExperimentReport,
    adapter: AdapterRecord,
    control: TrafficControl,
    settings: ExperimentSettings,
) -> Action | None:
    """Carry out a verdict when the settings allow it: promote the challenger, or move its
    traffic back to the main version. Returns the action taken, if any."""
    rec = report.recommendation
    main = adapter.main_version
    if rec.challenger is None or main is None or report.experiment_id != adapter.experiment_id:
        return None
    reason = f"{rec.action.value}: {rec.reason} (experiment {report.experiment_id})"
    if rec.action is Action.PROMOTE and settings.auto_promote:
        await control.promote(adapter.name, rec.challenger, actor=AUTO_ACTOR, reason=reason)
        return rec.action
    if rec.action is Action.ROLL_BACK and settings.auto_rollback:
        weights = dict(adapter.traffic)
        weights[main] = weights.get(main, 0) + weights.pop(rec.challenger, 0)
        await control.set_traffic(adapter.name, weights, actor=AUTO_ACTOR, reason=reason)
        return rec.action
    return None

"""Prometheus metrics of one gateway, and its recent activity (for the dashboard).

Each gateway has its own `CollectorRegistry` (never prometheus_client's global one), so tests can
build many apps in one process. `ChatService` calls `GatewayMetrics.observe_request` once per
finished generation; the feedback endpoint calls `observe_feedback`; the HTTP middleware
(`loramux.api.metrics.MetricsMiddleware`) counts every HTTP request by its route template. What
the engine and the registry hold (loaded adapters, traffic weights, queue depth) is read when
Prometheus scrapes. Labels hold names, versions and route templates: never prompt text.

Metric names (all `loramux_` prefixed) are listed in docs/operations.md.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from loramux.config import LoramuxConfig
from loramux.gateway.activity import Activity, RequestRow
from loramux.router.decision import RouteTarget
from loramux.serve.paging import LOAD_BUCKETS, PagedEngine
from loramux.serve.remote import RemoteEngine

if TYPE_CHECKING:
    from loramux.gateway.service import PreparedRequest
    from loramux.gateway.services import AppServices

TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
TOTAL_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0)
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
MARGIN_BUCKETS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0)
NONE = "none"
"""Label value for an abstained route or a request without an adapter version."""


class GatewayMetrics:
    """The app's metrics and its recent activity (for the dashboard)."""

    def __init__(self, config: LoramuxConfig) -> None:
        self.registry = CollectorRegistry()
        self.activity = Activity(
            recent=config.dashboard.recent_decisions, keep_texts=config.dashboard.show_texts
        )
        self._svc: AppServices | None = None
        self._window: deque[tuple[bool, bool]] = deque(maxlen=config.metrics.window)
        """(abstained, went to RAG) of the recent router decisions."""
        self.generations_in_flight = 0
        r = self.registry
        request_labels = ("endpoint", "route", "target", "adapter", "version")
        latency_labels = ("target", "adapter", "version")
        version_labels = ("adapter", "version")
        self.requests = Counter(
            "loramux_requests", "Generation requests by who answered.", request_labels, registry=r
        )
        self.errors = Counter(
            "loramux_request_errors",
            "Generation requests that failed after dispatch.",
            request_labels,
            registry=r,
        )
        self.client_errors = Counter(
            "loramux_request_client_errors",
            "Generation requests the engine refused because of the request (a 4xx: context too "
            "long, bad parameters); not counted in loramux_request_errors nor loramux_ab_errors.",
            request_labels,
            registry=r,
        )
        self.ttft = Histogram(
            "loramux_time_to_first_token_seconds",
            "Time from the engine call to the first chunk.",
            latency_labels,
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tpot = Histogram(
            "loramux_time_per_output_token_seconds",
            "Decode time per output token after the first.",
            latency_labels,
            buckets=TPOT_BUCKETS,
            registry=r,
        )
        self.total = Histogram(
            "loramux_request_duration_seconds",
            "Time from the engine call to the last chunk.",
            latency_labels,
            buckets=TOTAL_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "loramux_prompt_tokens", "Prompt tokens.", version_labels, registry=r
        )
        self.completion_tokens = Counter(
            "loramux_completion_tokens", "Completion tokens.", version_labels, registry=r
        )
        self.decisions = Counter(
            "loramux_router_decisions",
            'Router decisions (`model: "auto"`) by route (`none`: abstained) and target.',
            ("route", "target"),
            registry=r,
        )
        self.score = Histogram(
            "loramux_router_score",
            "Router confidence in its best route, by target.",
            ("target",),
            buckets=SCORE_BUCKETS,
            registry=r,
        )
        self.margin = Histogram(
            "loramux_router_margin",
            "How far the best route is ahead of the next, by target.",
            ("target",),
            buckets=MARGIN_BUCKETS,
            registry=r,
        )
        rates = Gauge(
            "loramux_router_rate",
            "Share of the recent router decisions (metrics.window) that abstained, or went to RAG.",
            ("kind",),
            registry=r,
        )
        rates.labels("abstention").set_function(lambda: self._rate(0))
        rates.labels("rag").set_function(lambda: self._rate(1))
        self.ab_requests = Counter(
            "loramux_ab_requests",
            "Requests an A/B traffic split assigned to each version.",
            ("adapter", "version", "experiment"),
            registry=r,
        )
        self.ab_errors = Counter(
            "loramux_ab_errors",
            "Failed requests an A/B traffic split assigned to each version.",
            ("adapter", "version", "experiment"),
            registry=r,
        )
        self.ab_feedback = Counter(
            "loramux_ab_feedback",
            "User ratings (`POST /v1/feedback`) by version.",
            ("adapter", "version", "experiment", "rating"),
            registry=r,
        )
        self.http = Counter(
            "loramux_http_requests",
            "HTTP requests by method, route template and status.",
            ("method", "path", "status"),
            registry=r,
        )
        self.http_seconds = Histogram(
            "loramux_http_request_duration_seconds",
            "HTTP request time until the last byte, by route template.",
            ("method", "path"),
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.http_in_flight = Gauge(
            "loramux_http_requests_in_flight", "HTTP requests being handled.", registry=r
        )
        Gauge(
            "loramux_queue_depth",
            "Requests waiting for the engine: the admission queue's depth, else the engine's "
            "pending count, else generation requests in flight.",
            registry=r,
        ).set_function(self.queue_depth)
        r.register(_StateCollector(self))

    def bind(self, svc: AppServices) -> None:
        """Read engine and registry state from `svc` when scraped."""
        self._svc = svc

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    def queue_depth(self) -> float:
        svc = self._svc
        if svc is not None:
            for source, attr in ((_admission(svc), "depth"), (svc.engine, "pending")):
                value = getattr(source, attr, None) if source is not None else None
                if isinstance(value, int | float):
                    return float(value)
        return float(self.generations_in_flight)

    def observe_request(
        self,
        prepared: PreparedRequest,
        *,
        ttft_s: float | None,
        total_s: float,
        prompt_tokens: int,
        completion_tokens: int,
        error: bool,
        client_error: bool = False,
    ) -> None:
        """Count one finished (or failed) generation and keep it for the dashboard.

        `error` is a failure of the engine or the server; `client_error` a request the engine
        refused because of the request itself (4xx), which is no fault of the version."""
        from loramux.gateway.dispatch import AUTO_MODEL

        generation, dispatch = prepared.generation, prepared.dispatch
        assignment = dispatch.assignment if dispatch else None
        decision = dispatch.decision if dispatch else None
        target = decision.target.value if decision else RouteTarget.BASE.value
        route = (decision.route if decision else None) or NONE
        adapter = assignment.version.name if assignment else "base"
        version = assignment.version.version if assignment else NONE
        endpoint = "completions" if generation.prompt is not None else "chat"
        labels = (endpoint, route, target, adapter, version)
        self.requests.labels(*labels).inc()
        if error:
            self.errors.labels(*labels).inc()
        if client_error:
            self.client_errors.labels(*labels).inc()
        if ttft_s is not None:
            self.ttft.labels(target, adapter, version).observe(ttft_s)
            if completion_tokens > 1:
                tpot = (total_s - ttft_s) / (completion_tokens - 1)
                self.tpot.labels(target, adapter, version).observe(tpot)
        self.total.labels(target, adapter, version).observe(total_s)
        self.prompt_tokens.labels(adapter, version).inc(prompt_tokens)
        self.completion_tokens.labels(adapter, version).inc(completion_tokens)
        routed = decision is not None and prepared.model == AUTO_MODEL
        if routed and decision is not None:
            self.decisions.labels(route, target).inc()
            self.score.labels(target).observe(decision.score)
            self.margin.labels(target).observe(decision.margin)
            self._window.append((decision.abstained, decision.target is RouteTarget.RAG))
        if assignment is not None and not assignment.pinned and not client_error:
            ab = (adapter, version, assignment.experiment_id)  # a 4xx is no A/B sample
            self.ab_requests.labels(*ab).inc()
            if error:
                self.ab_errors.labels(*ab).inc()
        text = None
        if self.activity.keep_texts:
            users = [m.content for m in generation.messages if m.role == "user"]
            text = users[-1] if users else generation.prompt
        self.activity.record(
            RequestRow(
                at=time.time(),
                request_id=generation.request_id,
                model=prepared.model,
                routed=routed,
                route=decision.route if decision else None,
                target=target,
                adapter=adapter,
                version=assignment.version.version if assignment else None,
                score=decision.score if decision else 0.0,
                margin=decision.margin if decision else 0.0,
                alternatives=decision.alternatives if decision else (),
                reason=decision.reason if decision else "raw completion of the base model",
                ttft_ms=round(1000 * ttft_s, 1) if ttft_s is not None else None,
                total_ms=round(1000 * total_s, 1),
                completion_tokens=completion_tokens,
                error=error or client_error,
                text=text,
            )
        )

    def observe_feedback(self, adapter: str, version: str, experiment: str, rating: str) -> None:
        """Count one user rating of a version."""
        self.ab_feedback.labels(adapter, version, experiment or NONE, rating).inc()

    def _rate(self, field: int) -> float:
        """Share of the window's decisions that abstained (field 0) or went to RAG (field 1)."""
        window = list(self._window)
        return sum(w[field] for w in window) / len(window) if window else 0.0


class _StateCollector(Collector):
    """Read at scrape time: one gauge per loaded adapter version, and each version's weight."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        loaded = GaugeMetricFamily(
            "loramux_adapter_loaded",
            "1 for each adapter version loaded in the engine.",
            labels=("adapter", "version"),
        )
        weights = GaugeMetricFamily(
            "loramux_adapter_traffic_weight",
            "Traffic split: each served version's weight (0-100) in its adapter's experiment.",
            labels=("adapter", "version", "experiment"),
        )
        svc = self._metrics._svc
        if svc is not None:
            for key in svc.engine.loaded_adapters():
                name, _, version = key.partition("@")
                loaded.add_metric((name, version or NONE), 1.0)
            for adapter in svc.registry.adapters():
                for version, weight in adapter.traffic.items():
                    experiment = adapter.experiment_id or NONE
                    weights.add_metric((adapter.name, version, experiment), float(weight))
        yield loaded
        yield weights
        if svc is not None and isinstance(svc.engine, PagedEngine):
            yield from _paging_metrics(svc.engine)
        remote = _remote_engine(svc.engine) if svc is not None else None
        if remote is not None:
            yield from _replica_metrics(remote)
        admission = _admission(svc) if svc is not None else None
        if admission is not None:
            slots = getattr(admission, "in_flight", None)
            if isinstance(slots, int):
                yield GaugeMetricFamily(
                    "loramux_admission_in_flight", "Generation slots taken.", value=slots
                )
            rejected = getattr(admission, "rejected", None)
            if isinstance(rejected, int):
                yield CounterMetricFamily(
                    "loramux_admission_rejected",
                    "Requests refused with 503 (queue full, or waited too long).",
                    value=rejected,
                )


def _paging_metrics(engine: PagedEngine) -> Iterator[Metric]:
    """Adapter paging (`serve.paging`): loaded versions against slots, loads, evictions, load
    failures, cold and warm requests, and the load-time histogram, labelled by engine."""
    stats, labels, value = engine.stats, ("engine",), (engine.name,)
    numbers: list[tuple[type[GaugeMetricFamily | CounterMetricFamily], str, str, float]] = [
        (GaugeMetricFamily, "loramux_adapters_loaded", "Adapter versions loaded in the engine.",
         len(engine.loaded_adapters())),
        (GaugeMetricFamily, "loramux_adapter_slots",
         "Most adapter versions loaded at once (engine.max_loaded_adapters).", engine.capacity),
        (GaugeMetricFamily, "loramux_adapters_pinned", "Adapter versions pinned (never evicted).",
         len(engine.pinned)),
        (CounterMetricFamily, "loramux_adapter_loads", "Adapter versions loaded into the engine.",
         stats.loads),
        (CounterMetricFamily, "loramux_adapter_evictions",
         "Adapter versions unloaded to make room for another.", stats.evictions),
        (CounterMetricFamily, "loramux_adapter_load_failures",
         "Adapter loads that failed (bad files, engine errors).", stats.load_failures),
        (CounterMetricFamily, "loramux_adapter_cold_requests",
         "Requests that waited for their adapter to load.", stats.misses),
        (CounterMetricFamily, "loramux_adapter_warm_requests",
         "Requests whose adapter was loaded already.", stats.hits),
    ]  # fmt: skip
    for family_cls, name, doc, number in numbers:
        family = family_cls(name, doc, labels=labels)
        family.add_metric(value, number)
        yield family
    histogram = HistogramMetricFamily(
        "loramux_adapter_load_seconds",
        "Time to load one adapter version into the engine.",
        labels=labels,
    )
    cumulative, buckets = 0, []
    for bound, count in zip(LOAD_BUCKETS, stats.load_buckets, strict=True):
        cumulative += count
        buckets.append((repr(bound), cumulative))
    buckets.append(("+Inf", stats.loads))
    histogram.add_metric(value, buckets, sum_value=stats.load_seconds_sum)
    yield histogram


def _remote_engine(engine: object) -> RemoteEngine | None:
    """The remote engine under the pager and the supervisor, when that is the engine."""
    for _ in range(4):
        if isinstance(engine, RemoteEngine):
            return engine
        engine = getattr(engine, "inner", None) or getattr(engine, "engine", None)
    return None


def _replica_metrics(engine: RemoteEngine) -> Iterator[Metric]:
    """Placement on vLLM replicas (`serve.replicas`), labelled by replica URL: in rotation,
    adapter versions placed there, running requests, loads, unloads and load failures."""
    families: list[tuple[type[GaugeMetricFamily | CounterMetricFamily], str, str, str]] = [
        (GaugeMetricFamily, "loramux_replica_up", "1 while the vLLM replica is in rotation.",
         "healthy"),
        (GaugeMetricFamily, "loramux_replica_placements",
         "Adapter versions loaded on the vLLM replica.", "placements"),
        (GaugeMetricFamily, "loramux_replica_in_flight", "Requests running on the vLLM replica.",
         "inflight"),
        (CounterMetricFamily, "loramux_replica_adapter_loads",
         "Adapter versions loaded onto the vLLM replica (/v1/load_lora_adapter).", "loads"),
        (CounterMetricFamily, "loramux_replica_adapter_unloads",
         "Adapter versions unloaded from the vLLM replica (LRU past its budget, or retired).",
         "unloads"),
        (CounterMetricFamily, "loramux_replica_adapter_load_failures",
         "Loads the vLLM replica refused or did not answer.", "load_failures"),
    ]  # fmt: skip
    stats = engine.pool.stats()
    for family_cls, name, doc, field in families:
        family = family_cls(name, doc, labels=("replica",))
        for row in stats:
            family.add_metric((str(row["url"]),), float(row[field]))
        yield family


def _admission(svc: AppServices) -> object | None:
    """The admission queue in front of the engine, when the server has one."""
    return getattr(svc.chat, "admission", None) or svc.extra.get("admission")

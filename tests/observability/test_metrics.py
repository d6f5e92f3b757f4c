"""`/metrics` of a real app (fake engine, real registry): what is counted, with which labels, and
who may read it; router histograms and rates from hand-made decisions."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from loramux.adapters.traffic import Assignment
from loramux.adapters.version import AdapterVersion
from loramux.config import LoramuxConfig
from loramux.gateway.dispatch import Dispatch
from loramux.gateway.metrics import GatewayMetrics
from loramux.gateway.service import PreparedRequest
from loramux.router.decision import RouteDecision, RouteTarget
from loramux.serve.types import GenerationRequest, SamplingParams
from loramux.types import ChatMessage
from tests.builders import write_lora_folder
from tests.observability.conftest import ADMIN, AppFactory


def value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels`."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def label_sets(text: str, name: str) -> list[dict[str, str]]:
    return [
        dict(s.labels)
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name
    ]


async def chat(client: httpx.AsyncClient, model: str, **extra: object) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hello there"}], **extra}
    return await client.post("/v1/chat/completions", json=body)


async def test_requests_latency_and_loaded_adapters_are_labelled(
    client: httpx.AsyncClient,
) -> None:
    for model in ("hr", "hr", "it", "SmolLM2-135M-Instruct"):
        assert (await chat(client, model, max_tokens=5)).status_code == 200
    stream = await chat(client, "it", stream=True, max_tokens=5)
    assert stream.status_code == 200
    assert (await chat(client, "nope")).status_code == 404
    hr_version = (await chat(client, "hr")).headers["x-loramux-adapter-version"]

    text = (await client.get("/metrics")).text
    hr = {"adapter": "hr", "version": hr_version, "target": "adapter", "route": "hr"}
    assert value(text, "loramux_requests_total", endpoint="chat", **hr) == 3
    assert value(text, "loramux_requests_total", adapter="it") == 2
    assert value(text, "loramux_requests_total", adapter="base", target="base", route="none") == 1
    assert value(text, "loramux_request_errors_total") == 0
    n = value(text, "loramux_time_to_first_token_seconds_count", adapter="hr")
    assert n == 3
    assert value(text, "loramux_request_duration_seconds_count") == 6
    assert value(text, "loramux_time_per_output_token_seconds_count") >= 5
    assert value(text, "loramux_completion_tokens_total", adapter="hr") > 0
    # One gauge per loaded adapter version, not a comma-separated list.
    loaded = label_sets(text, "loramux_adapter_loaded")
    assert sorted(d["adapter"] for d in loaded) == ["hr", "it"]
    assert {"adapter": "hr", "version": hr_version} in loaded
    assert value(text, "loramux_adapter_traffic_weight", adapter="hr", version=hr_version) == 100
    assert value(text, "loramux_queue_depth") == 0
    # HTTP requests by route template and status.
    chat_path = "/v1/chat/completions"
    assert value(text, "loramux_http_requests_total", path=chat_path, status="200") == 6
    assert value(text, "loramux_http_requests_total", path=chat_path, status="404") == 1
    assert value(text, "loramux_http_request_duration_seconds_count", path=chat_path) == 7


async def test_ab_counters_per_version_and_feedback(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    second = write_lora_folder(tmp_path / "hr-v2", seed=9)
    r = await client.post("/v1/adapters", json={"name": "hr", "path": str(second)})
    assert r.status_code == 201, r.text
    adapter = r.json()["adapter"]
    old, new = adapter["main_version"], r.json()["version"]["id"]
    r = await client.put("/v1/adapters/hr/traffic", json={"versions": {old: 50, new: 50}})
    assert r.status_code == 200, r.text
    experiment = r.json()["experiment_id"]

    seen: dict[str, str] = {}
    for i in range(40):
        r = await chat(client, "hr", user=f"user-{i}", max_tokens=3)
        seen[r.headers["x-loramux-adapter-version"]] = r.headers["x-request-id"]
    assert set(seen) == {old, new}
    rated = await client.post("/v1/feedback", json={"request_id": seen[new], "rating": "up"})
    assert rated.status_code == 200, rated.text

    text = (await client.get("/metrics")).text
    per_version = {
        v: value(text, "loramux_ab_requests_total", adapter="hr", version=v, experiment=experiment)
        for v in (old, new)
    }
    assert sum(per_version.values()) == 40
    assert all(n > 0 for n in per_version.values())
    up = value(text, "loramux_ab_feedback_total", version=new, rating="up")
    assert up == 1
    assert value(text, "loramux_adapter_traffic_weight", adapter="hr", version=new) == 50


async def test_each_app_has_its_own_registry(make_app: AppFactory) -> None:
    async with make_app() as first, make_app() as second:
        assert (await chat(first, "hr")).status_code == 200
        assert value((await first.get("/metrics")).text, "loramux_requests_total") == 1
        assert value((await second.get("/metrics")).text, "loramux_requests_total") == 0
    assert REGISTRY.get_sample_value("loramux_requests_total") is None


async def test_metrics_need_the_admin_key_off_loopback(make_app: AppFactory) -> None:
    async with make_app(key=False) as local:
        assert (await local.get("/metrics")).status_code == 200
    async with make_app("server: {host: 0.0.0.0}", key=False) as exposed:
        refused = await exposed.get("/metrics")
        assert refused.status_code == 401
        assert "admin key" in refused.json()["error"]["message"]
        assert (await exposed.get("/metrics", headers=ADMIN)).status_code == 200
    async with make_app("server: {host: 0.0.0.0}", "metrics: {auth: open}", key=False) as c:
        assert (await c.get("/metrics")).status_code == 200
    async with make_app("metrics: {enabled: false}") as off:
        assert (await off.get("/metrics")).status_code == 404


def _prepared(decision: RouteDecision, *, model: str = "auto") -> PreparedRequest:
    assignment = None
    if decision.adapter:
        version = AdapterVersion(decision.adapter, "v1", Path("/nowhere"), 8, ("q_proj",), "base")
        assignment = Assignment(version, "exp1")
    generation = GenerationRequest(
        request_id="r1",
        sampling=SamplingParams(max_tokens=4),
        messages=(ChatMessage("user", "secret question"),),
    )
    return PreparedRequest(generation, model, Dispatch(decision, assignment, generation.messages))


def test_router_scores_margins_and_rates_come_from_auto_requests() -> None:
    metrics = GatewayMetrics(LoramuxConfig())
    hr = RouteDecision(RouteTarget.ADAPTER, "hr", "hr", 0.91, 0.6, (("hr", 0.91),), "routed")
    rag = RouteDecision(RouteTarget.RAG, None, None, 0.35, 0.05, (), "abstained; kb matched")
    base = RouteDecision(RouteTarget.BASE, None, None, 0.2, 0.01, (), "abstained")
    explicit = RouteDecision(RouteTarget.ADAPTER, "hr", "hr", 1.0, 1.0, (), "named")
    for decision in (hr, rag, base):
        metrics.observe_request(
            _prepared(decision),
            ttft_s=0.01,
            total_s=0.05,
            prompt_tokens=3,
            completion_tokens=4,
            error=False,
        )
    metrics.observe_request(
        _prepared(explicit, model="hr"),
        ttft_s=None,
        total_s=0.01,
        prompt_tokens=3,
        completion_tokens=0,
        error=True,
    )
    text = metrics.render().decode()
    assert value(text, "loramux_router_decisions_total") == 3  # the named model is no decision
    assert value(text, "loramux_router_decisions_total", route="none", target="rag") == 1
    assert value(text, "loramux_router_score_count", target="adapter") == 1
    assert value(text, "loramux_router_score_bucket", target="adapter", le="0.9") == 0
    assert value(text, "loramux_router_score_bucket", target="adapter", le="0.95") == 1
    assert value(text, "loramux_router_margin_count") == 3
    assert abs(value(text, "loramux_router_rate", kind="abstention") - 2 / 3) < 1e-9
    assert abs(value(text, "loramux_router_rate", kind="rag") - 1 / 3) < 1e-9
    assert value(text, "loramux_request_errors_total", adapter="hr", version="v1") == 1
    assert value(text, "loramux_ab_errors_total", experiment="exp1") == 1
    rows = metrics.activity.recent()
    assert [r.target for r in rows] == ["adapter", "base", "rag", "adapter"]
    assert all(r.text is None for r in rows)  # texts are kept only when the dashboard shows them
    assert "secret question" not in text

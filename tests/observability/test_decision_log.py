"""The decision log: bounded rotation on disk, what a line holds (propensity, key id, candidates;
no prompt unless `dashboard.show_texts`), and `loramux report decisions` joining feedback."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
from typer.testing import CliRunner

from loramux.adapters.traffic import Assignment
from loramux.adapters.version import AdapterVersion
from loramux.cli import app as cli
from loramux.gateway.decisions import (
    DecisionLog,
    decision_record,
    log_files,
    read_decisions,
    summarise,
)
from loramux.gateway.dispatch import Dispatch
from loramux.gateway.service import PreparedRequest
from loramux.router.decision import RouteDecision, RouteTarget
from loramux.serve.types import GenerationRequest, SamplingParams
from loramux.types import ChatMessage
from tests.observability.conftest import ADMIN_KEY, AppFactory

SECRET = "my salary is 91234 and my manager is Ingrid"


def test_the_log_rotates_by_size_and_keeps_at_most_max_files(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "d", max_file_bytes=4096, max_files=3)
    for i in range(200):
        log.write({"request_id": f"r{i}", "pad": "x" * 100})
    log.close()
    files = log_files(tmp_path / "d")
    assert len(files) == 3
    assert all(f.stat().st_size <= 4096 for f in files)
    assert files[-1].name == f"decisions-{int(files[0].name[10:-6]) + 2}.jsonl"
    ids = [r["request_id"] for r in read_decisions(tmp_path / "d")]
    assert ids[-1] == "r199"
    assert ids == [f"r{i}" for i in range(200 - len(ids), 200)]  # the newest, in order
    # a new writer continues after the last file instead of starting over
    again = DecisionLog(tmp_path / "d", max_file_bytes=4096, max_files=3)
    again.write({"request_id": "after-restart"})
    again.close()
    assert [r["request_id"] for r in read_decisions(tmp_path / "d")][-1] == "after-restart"


def test_a_routed_line_has_the_candidates_with_scores_and_no_text() -> None:
    version = AdapterVersion("hr", "v1", Path("/x"), 8, ("q_proj",), "base")
    decision = RouteDecision(
        RouteTarget.ADAPTER, "hr", "hr", 0.91, 0.5, (("hr", 0.91), ("it", 0.41)), "top route"
    )
    prepared = PreparedRequest(
        GenerationRequest(
            request_id="req-1",
            sampling=SamplingParams(max_tokens=8),
            messages=(ChatMessage("user", SECRET),),
        ),
        "auto",
        Dispatch(decision, Assignment(version, "exp1"), (), propensity=0.3),
        key_id="key-1",
    )
    common = {"ttft_s": 0.01, "total_s": 0.2, "prompt_tokens": 5, "completion_tokens": 3}
    line = decision_record(prepared, outcome="ok", keep_text=False, **common)
    assert line["candidates"] == [{"name": "hr", "score": 0.91}, {"name": "it", "score": 0.41}]
    assert (line["routed"], line["target"], line["route"]) == (True, "adapter", "hr")
    assert (line["key_id"], line["version"], line["experiment"]) == ("key-1", "v1", "exp1")
    assert line["propensity"] == 0.3
    assert SECRET not in json.dumps(line)
    assert decision_record(prepared, outcome="ok", keep_text=True, **common)["text"] == SECRET


async def _two_version_split(client: httpx.AsyncClient, tmp_path: Path) -> tuple[str, str]:
    from tests.builders import write_lora_folder

    v2_dir = write_lora_folder(tmp_path / "hr-v2", seed=7)
    r = await client.post("/v1/adapters", json={"name": "hr", "path": str(v2_dir)})
    assert r.status_code == 201, r.text
    v2 = r.json()["version"]["id"]
    v1 = r.json()["adapter"]["main_version"]
    r = await client.put("/v1/adapters/hr/traffic", json={"versions": {v1: 70, v2: 30}})
    assert r.status_code == 200, r.text
    return v1, v2


async def test_served_requests_are_logged_and_reported_with_feedback(
    make_app: AppFactory, tmp_path: Path
) -> None:
    async with make_app() as http:
        v1, v2 = await _two_version_split(http, tmp_path)
        client = openai.AsyncOpenAI(
            base_url="http://loramux/v1", api_key=ADMIN_KEY, http_client=http, max_retries=0
        )
        ids: dict[str, str] = {}
        for i in range(12):
            raw = await client.chat.completions.with_raw_response.create(
                model="hr",
                messages=[{"role": "user", "content": SECRET}],
                max_tokens=4,
                user=f"user{i}",
            )
            ids[raw.headers["x-request-id"]] = raw.headers["x-loramux-adapter-version"]
        pinned = await client.chat.completions.with_raw_response.create(
            model=f"hr@{v2}", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        first = next(iter(ids))
        r = await http.post("/v1/feedback", json={"request_id": first, "rating": "up"})
        assert r.status_code == 200, r.text

    folder = tmp_path / "data1" / "decisions"
    lines = {r["request_id"]: r for r in read_decisions(folder)}
    assert set(ids) | {pinned.headers["x-request-id"]} <= set(lines)
    assert SECRET not in "".join(p.read_text() for p in log_files(folder))
    for request_id, version in ids.items():
        line = lines[request_id]
        assert line["version"] == version
        assert line["propensity"] == (0.7 if version == v1 else 0.3)
        assert line["key_id"].startswith("admin:")
        assert line["outcome"] == "ok"
        assert line["latency_ms"] > 0
    assert lines[pinned.headers["x-request-id"]]["propensity"] == 1.0

    config = tmp_path / "loramux1.yaml"
    result = CliRunner().invoke(cli, ["report", "decisions", "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    by_version = {g["version"]: g for g in report["groups"] if g["adapter"] == "hr"}
    assert sum(g["requests"] for g in by_version.values()) == 13
    assert by_version[ids[first]]["up"] == 1
    table = CliRunner().invoke(cli, ["report", "decisions", "--config", str(config)])
    assert table.exit_code == 0, table.output
    assert "p95 ms" in table.output
    assert v1[:12] in table.output


def test_summary_counts_abstentions_of_routed_requests_only() -> None:
    rows = [
        {"request_id": "a", "routed": True, "abstained": True, "target": "base", "outcome": "ok"},
        {"request_id": "b", "routed": True, "abstained": False, "target": "adapter", "route": "hr"},
        {"request_id": "c", "routed": False, "abstained": True, "target": "base"},
    ]
    summary = summarise(iter(rows), {"b": "down"})
    assert (summary["requests"], summary["routed"], summary["abstention_rate"]) == (3, 2, 0.5)
    assert sum(g["down"] for g in summary["groups"]) == 1

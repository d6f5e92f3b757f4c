"""Tenant-scoped data with two department keys at once, against the real app (fake engine, auth
on): registry reads need a key and show a department only its adapters, 404s name only what the
caller may use, feedback comes only from the key that made the request, and the ids records are
keyed by are the server's own, whatever `x-request-id` a client sends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from loramux.serve.fake import FakeEngine
from tests.builders import write_lora_folder
from tests.reliability.harness import ADMIN, BASE, app_client


@dataclass
class Tenants:
    app: FastAPI
    client: httpx.AsyncClient
    hr: dict[str, str]
    """Headers with hr's key (adapters: hr)."""
    it: dict[str, str]
    """Headers with it's key (adapters: it)."""
    data_dir: Path


@asynccontextmanager
async def tenants(tmp_path: Path, extra_yaml: str = "") -> AsyncIterator[Tenants]:
    """The real app with adapters hr and it, and one key per department (neither may use the
    base model)."""
    adapters = (
        "adapters:\n"
        f"  hr: {{path: {write_lora_folder(tmp_path / 'hr', seed=1)}, description: HR policy}}\n"
        f"  it: {{path: {write_lora_folder(tmp_path / 'it', seed=2)}}}\n"
    )
    async with app_client(tmp_path, FakeEngine(), adapters + extra_yaml) as (app, client):
        keys = {}
        for department in ("hr", "it"):
            r = await client.post(
                "/v1/keys",
                json={"department": department, "adapters": [department], "base": False},
            )
            assert r.status_code == 201, r.text
            keys[department] = {"authorization": f"Bearer {r.json()['key']}"}
        yield Tenants(app, client, keys["hr"], keys["it"], tmp_path / "data")


def chat(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}], **extra}


def no_key() -> dict[str, str]:
    return {"authorization": ""}


async def test_registry_reads_need_a_key_while_auth_is_on(tmp_path: Path) -> None:
    async with tenants(tmp_path) as t:
        for path in ("/v1/adapters", "/v1/adapters/hr", "/v1/adapters/hr/experiment"):
            r = await t.client.get(path, headers=no_key())
            assert r.status_code == 401, path
            assert r.json()["error"]["code"] == "invalid_api_key"


async def test_a_department_key_reads_only_its_own_adapters(tmp_path: Path) -> None:
    async with tenants(tmp_path) as t:
        listed = (await t.client.get("/v1/adapters", headers=t.hr)).json()["data"]
        assert [a["name"] for a in listed] == ["hr"]
        shown = await t.client.get("/v1/adapters/hr", headers=t.hr)
        assert shown.status_code == 200
        assert shown.json()["description"] == "HR policy"
        assert "audit" not in shown.json()  # who changed what is the admin's business
        assert (await t.client.get("/v1/adapters/hr/experiment", headers=t.hr)).status_code == 200
        for path in ("/v1/adapters/it", "/v1/adapters/it/experiment"):
            hidden = await t.client.get(path, headers=t.hr)
            assert hidden.status_code == 404, path
            message = hidden.json()["error"]["message"]
            assert message.endswith("registered adapters: hr"), message
        # it's key, at the same time, sees only it
        listed = (await t.client.get("/v1/adapters", headers=t.it)).json()["data"]
        assert [a["name"] for a in listed] == ["it"]
        assert (await t.client.get("/v1/adapters/hr", headers=t.it)).status_code == 404
        # the admin key sees both, with the audit log
        admin = (await t.client.get("/v1/adapters", headers=ADMIN)).json()["data"]
        assert [a["name"] for a in admin] == ["hr", "it"]
        audit = (await t.client.get("/v1/adapters/it", headers=ADMIN)).json()["audit"]
        assert [e["action"] for e in audit] == ["register"]


async def test_no_registry_read_shows_a_server_path(tmp_path: Path) -> None:
    async with tenants(tmp_path) as t:
        for headers in (t.hr, ADMIN):
            for path in ("/v1/adapters", "/v1/adapters/hr", "/v1/adapters/hr/experiment"):
                r = await t.client.get(path, headers=headers)
                assert r.status_code == 200
                assert str(tmp_path) not in r.text, path
                assert "adapters/hr/" not in r.text, path


async def test_an_unknown_model_404_names_only_the_callers_models(tmp_path: Path) -> None:
    async with tenants(tmp_path) as t:
        r = await t.client.post("/v1/chat/completions", json=chat("payroll"), headers=t.hr)
        assert r.status_code == 404
        message = r.json()["error"]["message"]
        assert message == (
            "The model 'payroll' does not exist. Available models: hr (see GET /v1/models)."
        )
        models = (await t.client.get("/v1/models", headers=t.it)).json()["data"]
        assert [m["id"] for m in models] == ["auto", "it"]
        r = await t.client.post("/v1/chat/completions", json=chat("payroll"), headers=ADMIN)
        assert f"Available models: {BASE}, hr, it " in r.json()["error"]["message"]


async def test_only_the_key_that_made_a_request_may_rate_it(tmp_path: Path) -> None:
    async with tenants(tmp_path) as t:
        answer = await t.client.post("/v1/chat/completions", json=chat("hr"), headers=t.hr)
        assert answer.status_code == 200
        rid = answer.headers["x-request-id"]
        assert answer.json()["id"] == f"chatcmpl-{rid}"
        stolen = await t.client.post(
            "/v1/feedback", json={"request_id": rid, "rating": "down"}, headers=t.it
        )
        assert stolen.status_code == 404
        assert stolen.json()["error"]["code"] == "request_not_found"
        report = (await t.client.get("/v1/adapters/hr/experiment", headers=t.hr)).json()
        assert [(a["up"], a["down"]) for a in report["arms"]] == [(0, 0)]
        own = await t.client.post(
            "/v1/feedback", json={"request_id": rid, "rating": "up"}, headers=t.hr
        )
        assert own.status_code == 200, own.text
        assert own.json()["adapter"] == "hr"
        by_admin = await t.client.post(
            "/v1/feedback", json={"request_id": rid, "rating": "up"}, headers=ADMIN
        )
        assert by_admin.status_code == 200
        report = (await t.client.get("/v1/adapters/hr/experiment", headers=t.hr)).json()
        assert [(a["up"], a["down"]) for a in report["arms"]] == [(1, 0)]


async def test_feedback_ownership_survives_a_flush_to_the_database(tmp_path: Path) -> None:
    async with tenants(tmp_path) as t:
        first = await t.client.post("/v1/chat/completions", json=chat("hr"), headers=t.hr)
        await t.client.post("/v1/chat/completions", json=chat("it"), headers=t.it)
        registry = t.app.state.services.registry
        registry.experiments.flush()
        registry.experiments._recent.clear()  # as after a restart: only SQLite remembers it
        rid = first.headers["x-request-id"]
        stored = registry.experiments.store.find_request(rid)
        assert stored is not None
        assert stored.key_id is not None
        assert stored.key_id != "anonymous"
        refused = await t.client.post(
            "/v1/feedback", json={"request_id": rid, "rating": "down"}, headers=t.it
        )
        assert refused.status_code == 404
        ok = await t.client.post(
            "/v1/feedback", json={"request_id": rid, "rating": "up"}, headers=t.hr
        )
        assert ok.status_code == 200


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_reused_client_request_id_changes_nothing_of_another_departments_records(
    tmp_path: Path, stream: bool
) -> None:
    async with tenants(tmp_path) as t:
        shared = {"x-request-id": "shared-1"}
        hr = await t.client.post(
            "/v1/chat/completions", json=chat("hr", stream=stream), headers={**t.hr, **shared}
        )
        it = await t.client.post(
            "/v1/chat/completions", json=chat("it", stream=stream), headers={**t.it, **shared}
        )
        for r in (hr, it):
            assert r.status_code == 200
            assert r.headers["x-client-request-id"] == "shared-1"
            assert r.headers["x-request-id"] != "shared-1"
        hr_id, it_id = hr.headers["x-request-id"], it.headers["x-request-id"]
        assert hr_id != it_id
        # the client's id names no record, for either department
        for headers in (t.hr, t.it):
            r = await t.client.post(
                "/v1/feedback", json={"request_id": "shared-1", "rating": "up"}, headers=headers
            )
            assert r.status_code == 404
        rated = await t.client.post(
            "/v1/feedback", json={"request_id": hr_id, "rating": "up"}, headers=t.hr
        )
        assert rated.json()["adapter"] == "hr"  # hr's record is still hr's
        hr_report = (await t.client.get("/v1/adapters/hr/experiment", headers=t.hr)).json()
        it_report = (await t.client.get("/v1/adapters/it/experiment", headers=t.it)).json()
        assert [(a["requests"], a["up"]) for a in hr_report["arms"]] == [(1, 1)]
        assert [(a["requests"], a["up"]) for a in it_report["arms"]] == [(1, 0)]

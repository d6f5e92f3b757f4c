"""The registry's HTTP API over a real registry and the fake engine: admin key, registration by
path and by upload, traffic, promote, retire, experiments, feedback, and OpenAI error envelopes."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI

from loramux.adapters.registry import AdapterRegistry
from loramux.api.errors import install_error_handlers
from loramux.api.routes import adapters
from loramux.keys.admin import AdminKeys, hash_key
from tests.builders import admin_key, write_lora_folder

ADMIN_KEY = admin_key("s3cret-admin")
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _app(registry: AdapterRegistry, keys: AdminKeys) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(adapters.router)
    app.state.services = SimpleNamespace(extra={"registry": registry, "admin_keys": keys})
    return app


@pytest.fixture
async def client(registry: AdapterRegistry) -> AsyncIterator[httpx.AsyncClient]:
    app = _app(registry, AdminKeys({"ops": hash_key(ADMIN_KEY)}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://loramux") as c:
        yield c


def _zip_of(folder: Path, prefix: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for p in folder.iterdir():
            zf.write(p, prefix + p.name)
    return buffer.getvalue()


def _error(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return dict(body["error"])


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {ADMIN_KEY}"}],
    ids=["missing", "wrong", "not-bearer"],
)
async def test_changes_need_the_admin_key(
    client: httpx.AsyncClient, tmp_path: Path, headers: dict[str, str]
) -> None:
    folder = write_lora_folder(tmp_path / "hr")
    calls = [
        client.post("/v1/adapters", json={"name": "hr", "path": str(folder)}, headers=headers),
        client.put("/v1/adapters/hr/traffic", json={"versions": {"x": 100}}, headers=headers),
        client.post("/v1/adapters/hr/promote", json={"version": "x"}, headers=headers),
        client.post("/v1/adapters/hr/versions/x/retire", headers=headers),
    ]
    for call in calls:
        response = await call
        assert response.status_code == 401
        assert _error(response)["code"] == "invalid_api_key"


async def test_without_a_configured_key_admin_endpoints_are_closed(
    registry: AdapterRegistry,
) -> None:
    app = _app(registry, AdminKeys({}))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://loramux"
    ) as c:
        response = await c.post("/v1/adapters", json={"name": "hr", "path": "/x"}, headers=ADMIN)
    assert response.status_code == 401
    assert _error(response)["code"] == "admin_key_not_configured"


async def test_register_by_path_then_list_and_show(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    folder = write_lora_folder(tmp_path / "hr")
    body = {
        "name": "hr",
        "path": str(folder),
        "department": "HR",
        "description": "HR policy",
        "utterances": ["How many vacation days do I get?"],
    }
    created = await client.post("/v1/adapters", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    payload = created.json()
    version = payload["version"]["id"]
    assert payload["created"] is True
    assert payload["adapter"]["traffic"] == {version: 100}
    assert payload["version"]["status"] == "active"
    again = await client.post("/v1/adapters", json=body, headers=ADMIN)
    assert again.status_code == 200
    assert again.json()["created"] is False

    listed = (await client.get("/v1/adapters", headers=ADMIN)).json()
    assert [a["name"] for a in listed["data"]] == ["hr"]
    shown = await client.get("/v1/adapters/hr", headers=ADMIN)
    assert shown.json()["audit"][0]["actor"] == "ops"
    assert str(tmp_path) not in shown.text, "file paths never leave the server"

    missing = await client.get("/v1/adapters/finance", headers=ADMIN)
    assert missing.status_code == 404
    assert _error(missing)["code"] == "adapter_not_found"


async def test_register_by_upload(client: httpx.AsyncClient, tmp_path: Path) -> None:
    folder = write_lora_folder(tmp_path / "hr")
    response = await client.post(
        "/v1/adapters",
        files={"file": ("hr.zip", _zip_of(folder, "hr/"), "application/zip")},
        data={
            "name": "hr",
            "department": "HR",
            "utterances": '["How many vacation days do I get?", "Parental leave?"]',
        },
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    assert response.json()["adapter"]["utterances"] == [
        "How many vacation days do I get?",
        "Parental leave?",
    ]


@pytest.mark.parametrize(
    ("members", "status", "code"),
    [
        ({"../escape.json": b"{}"}, 400, "invalid_archive"),
        (
            {"adapter_config.json": b'{"peft_type": "LORA"}', "adapter_model.bin": b"x"},
            400,
            "invalid_adapter",
        ),
    ],
    ids=["traversal", "pickle"],
)
async def test_bad_uploads_are_refused(
    client: httpx.AsyncClient,
    registry: AdapterRegistry,
    members: dict[str, bytes],
    status: int,
    code: str,
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    response = await client.post(
        "/v1/adapters",
        files={"file": ("x.zip", buffer.getvalue(), "application/zip")},
        data={"name": "hr"},
        headers=ADMIN,
    )
    assert response.status_code == status
    assert _error(response)["code"] == code
    assert (await client.get("/v1/adapters", headers=ADMIN)).json()["data"] == []
    assert list((registry.files.uploads_root).iterdir()) == []  # its archive is gone too


async def test_no_upload_leaves_its_archive_behind(
    client: httpx.AsyncClient, registry: AdapterRegistry, tmp_path: Path
) -> None:
    folder = write_lora_folder(tmp_path / "hr")
    ok = await client.post(
        "/v1/adapters",
        files={"file": ("hr.zip", _zip_of(folder), "application/zip")},
        data={"name": "hr"},
        headers=ADMIN,
    )
    assert ok.status_code == 201, ok.text
    not_an_archive = await client.post(
        "/v1/adapters",
        files={"file": ("it.zip", b"x" * 300_000)},
        data={"name": "it"},
        headers=ADMIN,
    )
    assert not_an_archive.status_code == 400
    assert list(registry.files.uploads_root.iterdir()) == []


async def test_malformed_admin_requests_are_400s(client: httpx.AsyncClient) -> None:
    missing = await client.post("/v1/adapters", json={"name": "hr"}, headers=ADMIN)
    assert missing.status_code == 400
    assert _error(missing)["param"] == "path"
    extra = await client.post(
        "/v1/adapters", json={"name": "hr", "path": "/x", "colour": "red"}, headers=ADMIN
    )
    assert extra.status_code == 400
    no_file = await client.post(
        "/v1/adapters", data={"name": "hr"}, files={"x": ("a", b"")}, headers=ADMIN
    )
    assert no_file.status_code == 400
    assert _error(no_file)["param"] == "file"


async def test_traffic_promote_retire_and_experiment(
    client: httpx.AsyncClient, registry: AdapterRegistry, tmp_path: Path
) -> None:
    ids = []
    for seed in (1, 2):
        folder = write_lora_folder(tmp_path / f"hr{seed}", seed=seed)
        response = await client.post(
            "/v1/adapters", json={"name": "hr", "path": str(folder)}, headers=ADMIN
        )
        ids.append(response.json()["version"]["id"])
    v1, v2 = ids

    bad = await client.put("/v1/adapters/hr/traffic", json={"versions": {v1: 70}}, headers=ADMIN)
    assert bad.status_code == 400
    assert _error(bad)["param"] == "versions"
    unknown = await client.put(
        "/v1/adapters/hr/traffic", json={"versions": {v1: 50, "nope": 50}}, headers=ADMIN
    )
    assert unknown.status_code == 404
    split = await client.put(
        "/v1/adapters/hr/traffic", json={"versions": {v1: 80, v2: 20}}, headers=ADMIN
    )
    assert split.status_code == 200
    assert split.json()["traffic"] == {v1: 80, v2: 20}

    conflict = await client.post(f"/v1/adapters/hr/versions/{v2}/retire", headers=ADMIN)
    assert conflict.status_code == 409
    assert "shift it first" in str(_error(conflict)["message"])

    assignment = registry.assign("hr", "alice")
    assert assignment is not None
    registry.experiments.record("req-1", assignment, ttft_s=0.02, total_s=0.2, completion_tokens=7)
    # Feedback needs a key too; the admin key works on every inference endpoint.
    rated = await client.post(
        "/v1/feedback", json={"request_id": "req-1", "rating": "up"}, headers=ADMIN
    )
    assert rated.status_code == 200
    assert rated.json()["version"] == assignment.version.version
    unknown_request = await client.post(
        "/v1/feedback", json={"request_id": "x", "rating": "up"}, headers=ADMIN
    )
    assert unknown_request.status_code == 404
    assert _error(unknown_request)["code"] == "request_not_found"
    bad_rating = await client.post(
        "/v1/feedback", json={"request_id": "req-1", "rating": "meh"}, headers=ADMIN
    )
    assert bad_rating.status_code == 400

    report = (await client.get("/v1/adapters/hr/experiment", headers=ADMIN)).json()
    arms = {a["version"]: a for a in report["arms"]}
    assert arms[assignment.version.version]["up"] == 1
    assert arms[assignment.version.version]["ttft"]["p50_ms"] == pytest.approx(20)
    assert report["recommendation"]["action"] == "keep_testing"

    promoted = await client.post("/v1/adapters/hr/promote", json={"version": v2}, headers=ADMIN)
    assert promoted.json()["traffic"] == {v2: 100}
    retired = await client.post(f"/v1/adapters/hr/versions/{v1}/retire", headers=ADMIN)
    assert retired.status_code == 200
    assert retired.json()["status"] == "retired"
    audit = (await client.get("/v1/adapters/hr", headers=ADMIN)).json()["audit"]
    assert [e["action"] for e in audit] == [
        "retire",
        "promote",
        "set_traffic",
        "register",
        "register",
    ]


async def test_rollback_and_delete_over_http(
    client: httpx.AsyncClient, registry: AdapterRegistry, tmp_path: Path
) -> None:
    ids = []
    for seed in (1, 2):
        folder = write_lora_folder(tmp_path / f"hr{seed}", seed=seed)
        r = await client.post(
            "/v1/adapters", json={"name": "hr", "path": str(folder)}, headers=ADMIN
        )
        ids.append(r.json()["version"]["id"])
    for call in (
        client.post("/v1/adapters/hr/rollback"),
        client.delete("/v1/adapters/hr"),
    ):
        assert (await call).status_code == 401
    nothing = await client.post("/v1/adapters/hr/rollback", headers=ADMIN)
    assert nothing.status_code == 409
    assert _error(nothing)["code"] == "adapter_conflict"
    await client.post("/v1/adapters/hr/promote", json={"version": ids[1]}, headers=ADMIN)
    rolled = await client.post("/v1/adapters/hr/rollback", headers=ADMIN)
    assert rolled.status_code == 200, rolled.text
    assert (rolled.json()["main_version"], rolled.json()["traffic"]) == (ids[0], {ids[0]: 100})

    assignment = registry.assign("hr", "someone")
    assert assignment is not None
    registry.experiments.record("req-1", assignment, total_s=0.1)  # it serves traffic
    refused = await client.delete("/v1/adapters/hr", headers=ADMIN)
    assert refused.status_code == 409
    assert "force=true" in str(_error(refused)["message"])
    forced = await client.delete("/v1/adapters/hr?force=true", headers=ADMIN)
    assert forced.status_code == 200, forced.text
    assert forced.json() == {"object": "adapter.deleted", "name": "hr", "deleted": True}
    assert (await client.get("/v1/adapters/hr", headers=ADMIN)).status_code == 404
    assert (await client.delete("/v1/adapters/hr", headers=ADMIN)).status_code == 404


async def test_a_relative_path_is_refused_saying_so(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/adapters", json={"name": "hr", "path": "adapters/hr"}, headers=ADMIN)
    assert r.status_code == 400
    error = _error(r)
    assert (error["code"], error["param"]) == ("invalid_adapter", "path")
    assert "'adapters/hr' is relative" in str(error["message"])

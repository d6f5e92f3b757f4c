"""API keys over the real app (real registry database, fake engine): the admin makes, lists and
revokes keys; inference endpoints refuse missing, wrong and revoked keys (401) and adapters a key
may not use (403), list only what a key may use, and apply per-key rate limits (429)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from typer.testing import CliRunner

from loramux.api import create_app
from loramux.cli import app as cli_app
from loramux.config import LoramuxConfig, load_config
from loramux.serve.fake import FakeEngine
from tests.builders import admin_key
from tests.conftest import REPO

ADMIN_KEY = admin_key("keys-test-admin")
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
BASE = "SmolLM2-135M-Instruct"
Serve = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def config_file(adapter_dirs: dict[str, Path], tmp_path: Path) -> Path:
    f = tmp_path / "loramux.yaml"
    f.write_text(
        "engine: {kind: fake, max_new_tokens: 32}\n"
        f"paths: {{data_dir: {tmp_path / 'data'}}}\n"
        "adapters:\n"
        f"  hr: {{path: {adapter_dirs['hr']}}}\n"
        f"  it: {{path: {adapter_dirs['it']}}}\n",
        encoding="utf-8",
    )
    return f


@pytest.fixture
def serve(config_file: Path) -> Serve:
    """Start the app on `config_file` (plus `extra` YAML); the client sends no key by itself."""

    @asynccontextmanager
    async def start(
        extra: str = "", env: dict[str, str] | None = None
    ) -> AsyncIterator[httpx.AsyncClient]:
        if extra:
            config_file.write_text(config_file.read_text() + extra, encoding="utf-8")
        config = load_config(config_file, environ={"LORAMUX_ADMIN_KEY": ADMIN_KEY, **(env or {})})
        app = create_app(config, engine=FakeEngine(context_length=64))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://loramux") as c:
                yield c

    return start


async def make_key(client: httpx.AsyncClient, **spec: Any) -> tuple[str, dict[str, Any]]:
    r = await client.post("/v1/keys", json={"department": "hr", **spec}, headers=ADMIN)
    assert r.status_code == 201, r.text
    body = r.json()
    return body.pop("key"), body


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def chat(model: str, text: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return dict(body["error"])


async def test_admin_creates_lists_and_revokes_keys_over_http(serve: Serve) -> None:
    async with serve() as client:
        key, created = await make_key(client, adapters=["hr", "it", "hr"], rpm=5, label="bot")
        assert key.startswith("lmx-")
        assert len(key) > 40
        assert created["prefix"] == key[:12]
        assert created["adapters"] == ["hr", "it"]
        assert (created["rpm"], created["tpm"], created["revoked"]) == (5, None, False)
        listed = (await client.get("/v1/keys", headers=ADMIN)).json()["data"]
        assert [k["id"] for k in listed] == [created["id"]]
        assert key not in str(listed)
        revoked = await client.delete(f"/v1/keys/{created['id']}", headers=ADMIN)
        assert revoked.status_code == 200
        assert revoked.json()["revoked"] is True
        assert revoked.json()["revoked_by"] == "admin"
        missing = await client.delete("/v1/keys/nope", headers=ADMIN)
        assert missing.status_code == 404
        assert error(missing)["code"] == "api_key_not_found"


async def test_key_endpoints_need_the_admin_key_not_a_department_key(serve: Serve) -> None:
    async with serve() as client:
        key, created = await make_key(client, adapters=["hr"])
        for headers in ({}, bearer(key)):
            calls = [
                client.post("/v1/keys", json={"department": "x"}, headers=headers),
                client.get("/v1/keys", headers=headers),
                client.delete(f"/v1/keys/{created['id']}", headers=headers),
            ]
            for call in calls:
                response = await call
                assert response.status_code == 401
                assert error(response)["code"] == "invalid_api_key"


async def test_invalid_key_requests_are_400s_naming_the_field(serve: Serve) -> None:
    async with serve() as client:
        cases = [
            ({"department": "h r"}, "department"),
            ({"department": "hr", "adapters": ["auto"]}, "adapters"),
            ({"department": "hr", "rpm": 0}, "rpm"),
            ({"department": "hr", "colour": "red"}, "colour"),
        ]
        for body, param in cases:
            r = await client.post("/v1/keys", json=body, headers=ADMIN)
            assert r.status_code == 400, body
            assert error(r)["param"] == param


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer lmx-not-a-key"}, {"authorization": "Basic abc"}],
    ids=["missing", "wrong", "not-bearer"],
)
async def test_inference_without_a_valid_key_is_401(serve: Serve, headers: dict[str, str]) -> None:
    async with serve() as client:
        calls = [
            client.post("/v1/chat/completions", json=chat("hr"), headers=headers),
            client.post("/v1/completions", json={"model": "hr", "prompt": "hi"}, headers=headers),
            client.post("/v1/route", json={"messages": chat("auto")["messages"]}, headers=headers),
            client.get("/v1/models", headers=headers),
            client.post("/v1/feedback", json={"request_id": "r", "rating": "up"}, headers=headers),
        ]
        for call in calls:
            response = await call
            assert response.status_code == 401
            assert error(response)["code"] == "invalid_api_key"
            assert response.headers["www-authenticate"] == "Bearer"


async def test_without_any_key_the_401_says_how_to_make_one(serve: Serve) -> None:
    async with serve() as client:
        r = await client.post("/v1/chat/completions", json=chat("hr"))
    message = error(r)["message"]
    assert "loramux keys create" in message
    assert "LORAMUX_AUTH=off" in message


async def test_a_revoked_key_stops_working_at_once(serve: Serve, config_file: Path) -> None:
    async with serve() as client:
        by_http, created = await make_key(client, adapters=["hr"])
        by_cli, created_cli = await make_key(client, adapters=["hr"])
        for key in (by_http, by_cli):
            r = await client.post("/v1/chat/completions", json=chat("hr"), headers=bearer(key))
            assert r.status_code == 200
        await client.delete(f"/v1/keys/{created['id']}", headers=ADMIN)
        result = CliRunner().invoke(
            cli_app, ["keys", "revoke", created_cli["id"], "--config", str(config_file)]
        )
        assert result.exit_code == 0, result.output
        for key in (by_http, by_cli):
            r = await client.post("/v1/chat/completions", json=chat("hr"), headers=bearer(key))
            assert r.status_code == 401
            assert "revoked" in error(r)["message"]


async def test_a_key_may_use_only_its_adapters(serve: Serve) -> None:
    async with serve() as client:
        key, _ = await make_key(client, adapters=["it"], base=False)
        ok = await client.post("/v1/chat/completions", json=chat("it"), headers=bearer(key))
        assert ok.status_code == 200
        assert ok.headers["x-loramux-adapter"] == "it"
        version = ok.headers["x-loramux-adapter-version"]
        admin_models = (await client.get("/v1/models", headers=ADMIN)).json()["data"]
        hr_version = next(m["version"] for m in admin_models if m["id"] == "hr")
        refused = [
            client.post("/v1/chat/completions", json=chat("hr"), headers=bearer(key)),
            client.post("/v1/chat/completions", json=chat(f"hr@{hr_version}"), headers=bearer(key)),
            client.post("/v1/chat/completions", json=chat(BASE), headers=bearer(key)),
            client.post(
                "/v1/completions", json={"model": "hr", "prompt": "hi"}, headers=bearer(key)
            ),
            client.post(
                "/v1/route",
                json={"model": "hr", "messages": chat("hr")["messages"]},
                headers=bearer(key),
            ),
        ]
        for call in refused:
            response = await call
            assert response.status_code == 403
            assert error(response)["code"] == "permission_denied"
            assert error(response)["param"] == "model"
        pinned = await client.post(
            "/v1/chat/completions", json=chat(f"it@{version}"), headers=bearer(key)
        )
        assert pinned.status_code == 200
        unknown = await client.post(
            "/v1/chat/completions", json=chat("payroll"), headers=bearer(key)
        )
        assert unknown.status_code == 404


async def test_models_lists_only_what_the_key_may_use(serve: Serve) -> None:
    async with serve() as client:
        it_only, _ = await make_key(client, adapters=["it"], base=False)
        with_base, _ = await make_key(client, adapters=["hr"])
        ids = [
            m["id"]
            for m in (await client.get("/v1/models", headers=bearer(it_only))).json()["data"]
        ]
        assert ids == ["auto", "it"]
        r = await client.get("/v1/models", headers=bearer(with_base))
        assert [m["id"] for m in r.json()["data"]] == [BASE, "auto", "hr"]
        everything = (await client.get("/v1/models", headers=ADMIN)).json()["data"]
        assert {m["id"] for m in everything} == {BASE, "auto", "hr", "it"}


async def test_admin_key_works_on_inference_endpoints_with_access_to_everything(
    serve: Serve,
) -> None:
    async with serve() as client:
        for model in ("hr", "it", BASE):
            r = await client.post("/v1/chat/completions", json=chat(model), headers=ADMIN)
            assert r.status_code == 200, r.text


async def test_requests_per_minute_limit_is_429_with_retry_after(serve: Serve) -> None:
    async with serve() as client:
        key, _ = await make_key(client, adapters=["hr"], rpm=3)
        other, _ = await make_key(client, adapters=["hr"], rpm=3)
        for _ in range(3):
            r = await client.post("/v1/chat/completions", json=chat("hr"), headers=bearer(key))
            assert r.status_code == 200
        limited = await client.post("/v1/chat/completions", json=chat("hr"), headers=bearer(key))
        assert limited.status_code == 429
        assert error(limited)["code"] == "rate_limit_exceeded"
        assert error(limited)["type"] == "requests"
        assert 1 <= int(limited.headers["retry-after"]) <= 20  # 3 a minute: one per 20 s
        route = await client.post(
            "/v1/route", json={"messages": chat("auto")["messages"]}, headers=bearer(key)
        )
        assert route.status_code == 429
        # Each key has its own allowance.
        r = await client.post("/v1/chat/completions", json=chat("hr"), headers=bearer(other))
        assert r.status_code == 200


async def test_tokens_per_minute_limit_is_429_and_settles_to_real_usage(serve: Serve) -> None:
    async with serve() as client:
        key, _ = await make_key(client, adapters=["hr"], tpm=20)
        # Estimate: ceil(13 chars / 4) + 10 = 14 of 20; real use: 4 prompt + 4 completion = 8.
        body = chat("hr", "one two three", max_tokens=10)
        first = await client.post("/v1/chat/completions", json=body, headers=bearer(key))
        assert first.status_code == 200
        assert first.json()["usage"]["total_tokens"] == 8
        second = await client.post("/v1/chat/completions", json=body, headers=bearer(key))
        assert second.status_code == 429
        assert error(second)["type"] == "tokens"
        # 20 - 8 = 12 left, 14 needed, refilled at 20 a minute: 6 s (not 24 s, as it would be
        # had the estimate of the first request not been settled to its real use).
        assert 1 <= int(second.headers["retry-after"]) <= 6


async def test_default_limits_come_from_the_config_and_keys_override_them(serve: Serve) -> None:
    async with serve("auth: {rpm: 1}\n") as client:
        default, _ = await make_key(client, adapters=["hr"])
        roomy, _ = await make_key(client, adapters=["hr"], rpm=100)
        statuses = [
            (
                await client.post("/v1/chat/completions", json=chat("hr"), headers=bearer(k))
            ).status_code
            for k in (default, default, roomy, roomy)
        ]
        assert statuses == [200, 429, 200, 200]


def test_auth_is_on_unless_a_config_turns_it_off(config_file: Path) -> None:
    assert LoramuxConfig().auth.enabled
    assert load_config(config_file, environ={}).auth.enabled
    shipped = REPO / "configs" / "default.yaml"
    assert not load_config(shipped, environ={}).auth.enabled  # the local demo, explicitly
    assert load_config(shipped, environ={"LORAMUX_AUTH": "on"}).auth.enabled
    assert load_config(REPO / "configs" / "production.example.yaml", environ={}).auth.enabled


async def test_with_auth_off_inference_needs_no_key_but_admin_endpoints_still_do(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve(env={"LORAMUX_AUTH": "off"}) as client:
        r = await client.post("/v1/chat/completions", json=chat("hr"))
        assert r.status_code == 200
        models = (await client.get("/v1/models")).json()["data"]
        assert {m["id"] for m in models} == {BASE, "auto", "hr", "it"}
        assert (await client.get("/v1/keys")).status_code == 401
    assert any(
        "auth is OFF" in rec.message and rec.levelname == "WARNING" for rec in caplog.records
    )


async def test_rotate_and_expire_over_http_with_the_openai_client(serve: Serve) -> None:
    async with serve() as http:
        key, created = await make_key(http, adapters=["hr"])

        def client(secret: str) -> openai.AsyncOpenAI:
            return openai.AsyncOpenAI(
                base_url="http://loramux/v1", api_key=secret, http_client=http, max_retries=0
            )

        messages = [{"role": "user", "content": "hello"}]
        ok = await client(key).chat.completions.create(model="hr", messages=messages)
        assert ok.choices[0].message.content
        r = await http.post(f"/v1/keys/{created['id']}/rotate", headers=ADMIN)
        assert r.status_code == 200, r.text
        new_key = r.json()["key"]
        assert r.json()["id"] == created["id"]
        assert r.json()["adapters"] == ["hr"]
        with pytest.raises(openai.AuthenticationError):
            await client(key).chat.completions.create(model="hr", messages=messages)
        again = await client(new_key).chat.completions.create(model="hr", messages=messages)
        assert again.choices[0].message.content

        short, _ = await make_key(http, adapters=["hr"], expires_at=time.time() + 1.0)
        first = await http.post("/v1/chat/completions", json=chat("hr"), headers=bearer(short))
        assert first.status_code == 200
        await asyncio.sleep(1.2)
        with pytest.raises(openai.AuthenticationError) as info:
            await client(short).chat.completions.create(model="hr", messages=messages)
        assert "expired" in str(info.value)
        assert info.value.code == "api_key_expired"


async def test_a_key_naming_an_unknown_adapter_gets_a_warning(serve: Serve) -> None:
    async with serve() as http:
        r = await http.post(
            "/v1/keys", json={"department": "hr", "adapters": ["hr", "hrr"]}, headers=ADMIN
        )
        assert r.status_code == 201
        (warning,) = r.json()["warnings"]
        assert "'hrr'" in warning
        assert "'hr'" not in warning.split("registered:")[0]
        ok = await http.post(
            "/v1/keys", json={"department": "hr", "adapters": ["it"]}, headers=ADMIN
        )
        assert "warnings" not in ok.json()
        both = await http.post(
            "/v1/keys",
            json={"department": "hr", "expires_in": "30d", "expires_at": 5.0},
            headers=ADMIN,
        )
        assert both.status_code == 400
        assert error(both)["param"] == "expires_in"
        dated = await http.post(
            "/v1/keys", json={"department": "hr", "expires_in": "30d"}, headers=ADMIN
        )
        assert dated.json()["expires_at"] == pytest.approx(time.time() + 30 * 86400, abs=60)

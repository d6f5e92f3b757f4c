"""The dashboard over ASGI (real registry, fake engine): login and its cookie, CSRF, changing a
split through the registry (audited under the admin's label), the pages' content, and the
evaluation charts' file serving (no path traversal)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from loramux.api.dashboard.session import SessionSigner
from tests.builders import write_lora_folder
from tests.ui.conftest import ADMIN, ADMIN_KEY, AppFactory

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)


async def login(client: httpx.AsyncClient, key: str = ADMIN_KEY) -> httpx.Response:
    page = await client.get("/ui/login")
    found = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert found is not None
    return await client.post("/ui/login", data={"nonce": found.group(1), "key": key})


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


async def two_hr_versions(client: httpx.AsyncClient, tmp_path: Path) -> tuple[str, str]:
    folder = write_lora_folder(tmp_path / "hr-v2", seed=7)
    r = await client.post("/v1/adapters", json={"name": "hr", "path": str(folder)}, headers=ADMIN)
    assert r.status_code == 201, r.text
    return r.json()["adapter"]["main_version"], r.json()["version"]["id"]


async def test_pages_need_a_login(make_app: AppFactory) -> None:
    async with make_app(key=False) as client:
        for path in ("/ui", "/ui/decisions", "/ui/experiments", "/ui/eval"):
            r = await client.get(path)
            assert r.status_code == 303
            assert r.headers["location"] == "/ui/login"
        assert (await client.get("/ui/api/traffic")).status_code == 401
        assert (await client.get("/ui/eval/files/a.png")).status_code == 401
        # The admin bearer token is for the API; the dashboard wants its own session.
        assert (await client.get("/ui", headers=ADMIN)).status_code == 303


async def test_login_sets_a_signed_httponly_strict_cookie(make_app: AppFactory) -> None:
    async with make_app(key=False) as client:
        wrong = await login(client, "not-the-key")
        assert wrong.status_code == 401
        assert "not valid" in wrong.text
        r = await login(client)
        assert r.status_code == 303
        assert r.headers["location"] == "/ui"
        cookie = next(h for h in r.headers.get_list("set-cookie") if "loramux_session=" in h)
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert "Path=/ui" in cookie
        assert ADMIN_KEY not in cookie
        page = await client.get("/ui")
        assert page.status_code == 200
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert 'id="adapter-hr"' in page.text
        assert 'id="adapter-it"' in page.text
        assert "logged in as" in page.text

        client.cookies.set("loramux_session", client.cookies["loramux_session"][:-2] + "xx")
        assert (await client.get("/ui")).status_code == 303


async def test_login_form_cannot_be_posted_without_its_nonce(make_app: AppFactory) -> None:
    async with make_app(key=False) as client:
        r = await client.post("/ui/login", data={"nonce": "guess", "key": ADMIN_KEY})
        assert r.status_code == 403
        assert "loramux_session" not in r.headers.get("set-cookie", "")


async def test_login_without_an_admin_key_configured_says_what_to_do(tmp_path: Path) -> None:
    from loramux.api import create_app
    from loramux.config import load_config
    from loramux.serve.fake import FakeEngine

    config_file = tmp_path / "c.yaml"
    config_file.write_text(f"engine: {{kind: fake}}\npaths: {{data_dir: {tmp_path / 'd'}}}\n")
    app = create_app(load_config(config_file, environ={}), engine=FakeEngine())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            page = await client.get("/ui/login")
            assert "LORAMUX_ADMIN_KEY" in page.text
            assert (await login(client, "anything")).status_code == 401


def test_session_tokens_expire_and_cannot_be_forged() -> None:
    now = [1000.0]
    signer = SessionSigner(60, clock=lambda: now[0])
    token = signer.issue("ops")
    session = signer.verify(token)
    assert session is not None
    assert session.label == "ops"
    assert SessionSigner(60).verify(token) is None  # another key: another server, or a restart
    assert signer.verify(token + "x") is None
    assert signer.verify("e30.AAAA") is None
    assert signer.check_csrf(session, signer.csrf(session))
    assert not signer.check_csrf(session, "nope")
    now[0] += 61
    assert signer.verify(token) is None


async def test_changing_a_split_goes_through_the_registry_and_is_audited(
    make_app: AppFactory, tmp_path: Path
) -> None:
    async with make_app(key=False) as client:
        old, new = await two_hr_versions(client, tmp_path)
        await login(client)
        page = (await client.get("/ui")).text
        assert f'name="w_{new}"' in page
        form = {f"w_{old}": "70", f"w_{new}": "30"}

        refused = await client.post("/ui/adapters/hr/traffic", data=form)
        assert refused.status_code == 403
        bad = await client.post(
            "/ui/adapters/hr/traffic", data={**form, f"w_{new}": "20", "csrf": csrf_of(page)}
        )
        assert bad.status_code == 400
        assert "sum to 90" in bad.text
        r = await client.post("/ui/adapters/hr/traffic", data={**form, "csrf": csrf_of(page)})
        assert r.status_code == 303
        assert r.headers["location"].startswith("/ui?changed=hr")

        shown = await client.get("/v1/adapters/hr", headers=ADMIN)
        assert shown.json()["traffic"] == {old: 70, new: 30}
        change = shown.json()["audit"][0]
        assert change["actor"] == "admin"  # the label of LORAMUX_ADMIN_KEY
        assert "Traffic split of hr changed" in (await client.get(r.headers["location"])).text


async def test_decisions_show_recent_requests_and_texts_only_when_enabled(
    make_app: AppFactory,
) -> None:
    body = {"model": "it", "messages": [{"role": "user", "content": "printer on fire"}]}
    async with make_app(key=False) as client:
        r = await client.post("/v1/chat/completions", json=body, headers=ADMIN)
        await login(client)
        page = (await client.get("/ui/decisions")).text
        assert r.headers["x-request-id"] in page
        assert "printer on fire" not in page
        traffic = (await client.get("/ui/api/traffic")).json()
        assert sum(traffic["series"]["it"]) > 0
    async with make_app("dashboard: {show_texts: true}", key=False) as client:
        await client.post("/v1/chat/completions", json=body, headers=ADMIN)
        await login(client)
        assert "printer on fire" in (await client.get("/ui/decisions")).text


async def test_experiments_show_rates_with_confidence_intervals(
    make_app: AppFactory, tmp_path: Path
) -> None:
    async with make_app(key=False) as client:
        old, new = await two_hr_versions(client, tmp_path)
        r = await client.put(
            "/v1/adapters/hr/traffic", json={"versions": {old: 50, new: 50}}, headers=ADMIN
        )
        assert r.status_code == 200
        for i in range(12):
            chat = {"model": "hr", "user": f"u{i}", "messages": [{"role": "user", "content": "x"}]}
            answer = await client.post("/v1/chat/completions", json=chat, headers=ADMIN)
            rating = {"request_id": answer.headers["x-request-id"], "rating": "up"}
            rated = await client.post("/v1/feedback", json=rating, headers=ADMIN)
            assert rated.status_code == 200
        await login(client)
        page = (await client.get("/ui/experiments")).text
        assert 'id="experiment-hr"' in page
        assert re.search(r"1\.000 \[0\.\d{3}, 1\.000\]", page)  # all thumbs up: rate and CI
        assert "<svg" in page
        assert "keep_testing" in page


async def test_eval_charts_are_listed_and_served_without_traversal(
    make_app: AppFactory, tmp_path: Path
) -> None:
    async with make_app(f"dashboard: {{eval_dir: {tmp_path / 'charts'}}}", key=False) as client:
        charts = tmp_path / "charts"
        (charts / "run1").mkdir(parents=True)
        (charts / "run1" / "confusion.png").write_bytes(PNG)
        (charts / "coverage.png").write_bytes(PNG)
        (tmp_path / "secret.png").write_bytes(b"not for you")
        (charts / "link.png").symlink_to(tmp_path / "secret.png")
        (charts / ".hidden.png").write_bytes(PNG)
        await login(client)
        page = (await client.get("/ui/eval")).text
        assert "/ui/eval/files/run1/confusion.png" in page
        assert "/ui/eval/files/coverage.png" in page
        assert "link.png" not in page
        assert ".hidden.png" not in page
        r = await client.get("/ui/eval/files/run1/confusion.png")
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/png"
        assert r.content == PNG
        for bad in (
            "../secret.png",
            "..%2Fsecret.png",
            "run1/../../secret.png",
            "link.png",
            ".hidden.png",
            "%2e%2e/secret.png",
            "/etc/passwd",
        ):
            refused = await client.get(f"/ui/eval/files/{bad}")
            assert refused.status_code == 404, bad
            assert b"not for you" not in refused.content


@pytest.mark.parametrize("name", ["dashboard.js", "dashboard.css"])
async def test_static_files_are_served(make_app: AppFactory, name: str) -> None:
    async with make_app(key=False) as client:
        r = await client.get(f"/ui/static/{name}")
        assert r.status_code == 200
        assert len(r.content) > 100
        assert (await client.get("/ui/static/..%2Fsession.py")).status_code == 404


def test_resolve_chart_refuses_everything_but_plain_png_files(tmp_path: Path) -> None:
    from loramux.api.dashboard.charts import resolve_chart

    root = tmp_path / "charts"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "c.png").write_bytes(PNG)
    (root / "notes.txt").write_text("x")
    (tmp_path / "outside.png").write_bytes(PNG)
    (root / "a" / "up").symlink_to(tmp_path)
    assert resolve_chart(root, "a/b/c.png") == root / "a" / "b" / "c.png"
    for bad in (
        "../outside.png",
        "a/../../outside.png",
        "a/up/outside.png",
        "/outside.png",
        "notes.txt",
        "a/b",
        "a//b/c.png",
        "a/b/missing.png",
        "a\\..\\..\\outside.png",
    ):
        assert resolve_chart(root, bad) is None, bad

"""The dashboard end to end in headless Chromium (Debian's `chromium`, driven by playwright):
a real `loramux serve` subprocess (fake engine, JSON logs) with the demo adapters; log in, see
hr and it, change hr's split in the form, and see it take effect in the admin API and in the
versions that answer requests. `make test` installs chromium when it is missing."""

from __future__ import annotations

import collections
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.builders import admin_key, write_lora_folder
from tests.conftest import REPO
from tests.serve_process import serving
from tests.ui.test_dashboard import PNG

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_KEY = admin_key("browser-admin")
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
PROMPT = "my stapler was confiscated by a heron"

if not Path(CHROMIUM).is_file():
    pytest.skip(
        "Debian's chromium is not installed (apt-get install chromium; `make test` does it)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("ui-serve")
    charts = tmp / "charts"
    charts.mkdir()
    (charts / "router-coverage.png").write_bytes(PNG)
    config = tmp / "loramux.yaml"
    config.write_text(
        f"paths: {{data_dir: {tmp / 'data'}}}\n"
        "engine: {max_new_tokens: 16}\n"
        f"dashboard: {{eval_dir: {charts}}}\n"
        "adapters:\n"
        f"  hr: {{path: {REPO / 'demo/adapters/hr'}, description: HR policy}}\n"
        f"  it: {{path: {REPO / 'demo/adapters/it'}, description: IT helpdesk}}\n",
        encoding="utf-8",
    )
    log = tmp / "serve.log"
    env = {**os.environ, "LORAMUX_ADMIN_KEY": ADMIN_KEY}
    args = ["serve", "--config", str(config), "--engine", "fake", "--log-format", "json"]
    with serving(
        args, env=env, log=log, cwd=REPO, timeout=60, interval=0.2, stop_timeout=20
    ) as url:
        yield url, tmp
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(line["logger"] == "loramux.gateway.service" for line in lines)
    for line in lines:
        assert {"ts", "level", "logger", "message", "request_id"} <= line.keys()
        assert "heron" not in line["message"]


def test_log_in_see_the_demo_adapters_and_change_a_split(server: tuple[str, Path]) -> None:
    url, tmp = server
    second = write_lora_folder(tmp / "hr-v2", seed=5)
    r = httpx.post(f"{url}/v1/adapters", json={"name": "hr", "path": str(second)}, headers=ADMIN)
    assert r.status_code == 201, r.text
    old, new = r.json()["adapter"]["main_version"], r.json()["version"]["id"]

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{url}/ui")
            assert page.url.endswith("/ui/login")
            page.fill("#key", "wrong key")
            page.click("#login")
            assert "not valid" in page.inner_text("#login-error")
            page.fill("#key", ADMIN_KEY)
            page.click("#login")
            page.wait_for_selector("#adapter-hr")
            assert "HR policy" in page.inner_text("#adapter-hr")
            assert "IT helpdesk" in page.inner_text("#adapter-it")
            assert "loramux_session" not in page.evaluate("document.cookie")  # HttpOnly

            page.fill(f"#split-hr input[name='w_{old}']", "20")
            page.fill(f"#split-hr input[name='w_{new}']", "80")
            page.click("#split-hr button[type=submit]")
            page.wait_for_selector("#flash")
            assert "Traffic split of hr changed" in page.inner_text("#flash")
            row = page.inner_text(f"#adapter-hr tr[data-version='{new}'] td.weight")
            assert row.strip() == "80"

            shown = httpx.get(f"{url}/v1/adapters/hr", headers=ADMIN).json()
            assert shown["traffic"] == {old: 20, new: 80}
            assert shown["audit"][0]["actor"] == "admin"
            served: collections.Counter[str] = collections.Counter()
            for i in range(40):
                answer = httpx.post(
                    f"{url}/v1/chat/completions",
                    json={
                        "model": "hr",
                        "user": f"user-{i}",
                        "messages": [{"role": "user", "content": PROMPT}],
                    },
                    headers=ADMIN,
                )
                assert answer.status_code == 200
                served[answer.headers["x-loramux-adapter-version"]] += 1
            assert set(served) <= {old, new}
            assert served[new] >= 20  # 80% of users, give or take

            page.reload()
            page.wait_for_selector("#traffic-legend [data-series='hr']", timeout=10_000)

            page.click("nav >> text=Router decisions")
            page.wait_for_selector("#decisions")
            assert answer.headers["x-request-id"] in page.inner_text("#decisions")
            assert "heron" not in page.content()  # texts are off by default

            page.click("nav >> text=A/B results")
            assert new in page.inner_text("#experiment-hr")

            page.click("nav >> text=Evaluation")
            image = page.wait_for_selector("img[alt='router-coverage.png']")
            assert image is not None
            page.wait_for_function("document.querySelector('img').complete")
            assert page.evaluate("document.querySelector('img').naturalWidth") == 1

            page.click("nav button:text('Log out')")
            page.wait_for_selector("#key")
            page.goto(f"{url}/ui")
            assert page.url.endswith("/ui/login")
        finally:
            browser.close()

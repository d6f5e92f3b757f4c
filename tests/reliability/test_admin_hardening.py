"""Admin hardening: weak admin keys are refused at start with one line, and failed
authentication is throttled per client address (the guessing address gets 429 with
`Retry-After`; other addresses, and the health probes, are unaffected)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from loramux.cli import app as cli_app
from loramux.config import load_config
from loramux.errors import ConfigError
from loramux.keys.throttle import FailureThrottle
from loramux.serve.fake import FakeEngine
from tests.builders import admin_key
from tests.reliability.harness import ADMIN, BASE, app_client, chat


def minimal_config(tmp_path: Path) -> Path:
    config = tmp_path / "c.yaml"
    config.write_text(
        f"engine: {{kind: fake}}\npaths: {{data_dir: {tmp_path / 'data'}}}\n", encoding="utf-8"
    )
    return config


@pytest.mark.parametrize(
    "key",
    ["s3cret-admin", "x", "a" * 40, "ab" * 20, " " * 3 + "short" + " " * 30],
    ids=["short", "one-char", "one-letter", "two-letters", "padded"],
)
def test_a_weak_admin_key_is_refused_with_one_clear_line(key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LORAMUX_ADMIN_KEY is too weak") as caught:
        load_config(minimal_config(tmp_path), environ={"LORAMUX_ADMIN_KEY": key})
    assert "\n" not in str(caught.value)
    assert "token_urlsafe(32)" in str(caught.value)  # says how to make a good one


def test_a_strong_admin_key_is_accepted(tmp_path: Path) -> None:
    config = load_config(minimal_config(tmp_path), environ={"LORAMUX_ADMIN_KEY": admin_key("ops")})
    assert set(config.admin.keys) == {"admin"}


def test_serve_refuses_to_start_with_a_weak_admin_key(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli_app,
        ["serve", "--config", str(minimal_config(tmp_path))],
        env={"LORAMUX_ADMIN_KEY": "change-me"},
    )
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "LORAMUX_ADMIN_KEY is too weak (9 characters" in lines[0]


def test_the_throttle_counts_failures_in_a_sliding_window() -> None:
    now = [100.0]
    throttle = FailureThrottle(3, 60.0, clock=lambda: now[0])
    for _ in range(2):
        throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") is None
    now[0] = 110.0
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == 50  # until the first failure is 60 s old
    assert throttle.retry_after("10.0.0.2") is None
    now[0] = 160.0
    assert throttle.retry_after("10.0.0.1") is None  # only the one at 110 s is in the window
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") is None
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == 10  # until the one at 110 s is 60 s old


def test_the_throttle_remembers_a_bounded_number_of_addresses() -> None:
    throttle = FailureThrottle(1, 60.0, clock=lambda: 0.0, max_addresses=3)
    for i in range(10):
        throttle.failed(f"10.0.0.{i}")
    assert [throttle.retry_after(f"10.0.0.{i}") for i in range(7, 10)] == [60, 60, 60]
    assert throttle.retry_after("10.0.0.0") is None  # forgotten first


async def test_wrong_keys_from_one_address_get_429_and_other_addresses_go_on(
    tmp_path: Path,
) -> None:
    extra = "auth: {max_failures: 3, failure_window_s: 60}\n"
    async with app_client(tmp_path, FakeEngine(), extra) as (app, _):

        def client_at(address: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(address, 40000))
            return httpx.AsyncClient(transport=transport, base_url="http://loramux")

        async with client_at("203.0.113.7") as attacker, client_at("198.51.100.2") as other:
            guesses = [
                attacker.get("/v1/adapters", headers={"authorization": "Bearer guess-1"}),
                attacker.put("/v1/adapters/hr/pin", headers={"authorization": "Bearer guess-2"}),
                attacker.post("/v1/chat/completions", json=chat()),  # no key at all
            ]
            for guess in guesses:
                assert (await guess).status_code == 401
            blocked = await attacker.get("/v1/models", headers={"authorization": "Bearer g4"})
            assert blocked.status_code == 429
            assert blocked.json()["error"]["code"] == "too_many_failed_authentications"
            assert 1 <= int(blocked.headers["retry-after"]) <= 60
            # even the right key waits, from that address: guessing must not pay off
            right = await attacker.post("/v1/chat/completions", json=chat(), headers=ADMIN)
            assert right.status_code == 429
            assert (await attacker.get("/health")).status_code == 200  # probes never wait
            # another address is not affected
            served = await other.post("/v1/chat/completions", json=chat(), headers=ADMIN)
            assert served.status_code == 200
            assert served.json()["model"] == BASE
            assert (await other.get("/v1/models", headers=ADMIN)).status_code == 200


async def test_failed_dashboard_logins_count_too(tmp_path: Path) -> None:
    extra = "auth: {max_failures: 2}\n"
    async with app_client(tmp_path, FakeEngine(), extra) as (app, _):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://loramux") as c:
            for _ in range(2):
                page = await c.get("/ui/login")
                found = re.search(r'name="nonce" value="([^"]+)"', page.text)
                assert found is not None
                r = await c.post("/ui/login", data={"nonce": found.group(1), "key": "guess"})
                assert r.status_code == 401, r.text
            assert (await c.get("/ui/login")).status_code == 429

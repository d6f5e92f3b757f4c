"""Structured log lines: JSON fields, the request id from the request's context, and no prompt
or completion text at INFO."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loramux.logs import QUIET_ENV, REQUEST_ID, JsonFormatter, configure_logging, make_handler

SECRET = "zanzibar walrus quartermaster"


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Everything logged at INFO and above during the test, as JSON lines."""
    out = io.StringIO()
    handler = make_handler("json", out)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


async def test_a_chat_request_logs_its_id_and_no_prompt_text(
    client: httpx.AsyncClient, json_log: io.StringIO
) -> None:
    r = await client.post(
        "/v1/chat/completions",
        json={"model": "hr", "messages": [{"role": "user", "content": SECRET}]},
        headers={"x-request-id": "trace-me-123"},
    )
    assert r.status_code == 200
    # The fake engine echoes the prompt, so the completion holds the secret words too.
    assert "walrus" in r.json()["choices"][0]["message"]["content"]
    text = json_log.getvalue()
    assert "walrus" not in text
    assert "zanzibar" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines, "the request logged nothing at INFO"
    for line in lines:
        assert {"ts", "level", "logger", "message", "request_id"} <= line.keys()
    mine = [line for line in lines if line["logger"] == "loramux.gateway.service"]
    assert len(mine) == 1
    assert mine[0]["request_id"] == r.headers["x-request-id"] != "trace-me-123"  # the server's
    assert mine[0]["client_request_id"] == "trace-me-123" == r.headers["x-client-request-id"]
    assert mine[0]["level"] == "INFO"
    assert "adapter=hr@" in mine[0]["message"]


def test_json_lines_carry_extra_fields_and_tracebacks() -> None:
    out = io.StringIO()
    logger = logging.getLogger("loramux.test.json")
    handler = make_handler("json", out)
    logger.addHandler(handler)
    logger.propagate = False
    token = REQUEST_ID.set("req-42")
    try:
        logger.warning("loaded %s", "hr@abc", extra={"adapter": "hr", "color_message": "x"})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        REQUEST_ID.reset(token)
        logger.removeHandler(handler)
        logger.propagate = True
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "loaded hr@abc"
    assert first["adapter"] == "hr"
    assert "color_message" not in first  # uvicorn's message with terminal colours
    assert first["request_id"] == "req-42"
    assert first["ts"].endswith("+00:00")
    assert second["level"] == "ERROR"
    assert "ValueError: boom" in second["exc"]


def test_configure_logging_twice_replaces_its_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in QUIET_ENV:
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    before = list(root.handlers)
    old_level = root.level
    try:
        configure_logging("info", "text")
        configure_logging("warning", "json")
        ours = [h for h in root.handlers if h not in before]
        assert len(ours) == 1
        assert isinstance(ours[0].formatter, JsonFormatter)
        assert root.level == logging.WARNING
        assert os.environ["TQDM_DISABLE"] == "1"  # progress bars are not JSON lines
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
        root.setLevel(old_level)


def test_serve_refuses_an_unknown_log_format_by_its_config_key(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from loramux.cli import app

    config = tmp_path / "c.yaml"
    config.write_text(f"paths: {{data_dir: {tmp_path / 'data'}}}\nengine: {{kind: fake}}\n")
    result = CliRunner().invoke(app, ["serve", "--config", str(config), "--log-format", "xml"])
    assert result.exit_code == 1
    assert "server.log_format" in result.output

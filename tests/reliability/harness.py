"""Helpers of the reliability tests: the real app over a fake engine, in-process or as a
`loramux serve` subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI

from loramux.api import create_app
from loramux.config import load_config
from loramux.serve.engine import Engine
from tests.builders import admin_key
from tests.conftest import REPO
from tests.serve_process import free_port, wait_ready

ADMIN_KEY = admin_key("reliability")
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
BASE = "SmolLM2-135M-Instruct"


def chat(content: str = "hello there", **extra: object) -> dict[str, object]:
    return {"model": BASE, "messages": [{"role": "user", "content": content}], **extra}


@asynccontextmanager
async def app_client(
    tmp_path: Path, engine: Engine, extra_yaml: str = "", *, engine_yaml: str = ""
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The real app (registry in `tmp_path`, auth on) over `engine`; the client sends the
    admin key. `extra_yaml` adds config sections (`limits: {...}`), `engine_yaml` keys of the
    `engine` section (`max_loaded_adapters: 4`)."""
    engine_keys = "kind: fake, max_new_tokens: 64" + (f", {engine_yaml}" if engine_yaml else "")
    config_file = tmp_path / "loramux.yaml"
    config_file.write_text(
        f"engine: {{{engine_keys}}}\npaths: {{data_dir: {tmp_path / 'data'}}}\n" + extra_yaml,
        encoding="utf-8",
    )
    config = load_config(config_file, environ={"LORAMUX_ADMIN_KEY": ADMIN_KEY})
    app = create_app(config, engine=engine)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://loramux", headers=ADMIN, timeout=30
        ) as client:
            yield app, client


@dataclass
class Server:
    """A `loramux serve` subprocess."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    data_dir: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def start_server(
    state: Path,
    config_yaml: str,
    *,
    server_yaml: str = "",
    port: int | None = None,
    data_dir: Path | None = None,
) -> Server:
    """Start `loramux serve --config` on loopback with `config_yaml` (and `server_yaml` keys
    added to the `server` section); wait until /ready. `data_dir` (default `state/data`) lets
    gateways of one fleet share their adapter files."""
    port = port or free_port()
    config_file = state / "serve.yaml"
    data_dir = data_dir or state / "data"
    config_file.write_text(
        f"server: {{host: 127.0.0.1, port: {port}{', ' + server_yaml if server_yaml else ''}}}\n"
        f"paths: {{data_dir: {data_dir}, cache_dir: {state / 'cache'}}}\n" + config_yaml,
        encoding="utf-8",
    )
    log = state / f"serve-{port}.log"
    env = {
        **os.environ,
        "LORAMUX_ADMIN_KEY": ADMIN_KEY,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO / "src"),
    }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "loramux", "serve", "--config", str(config_file)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(proc, f"http://127.0.0.1:{port}", log, data_dir)
    problem = wait_ready(proc, server.url, server.output, timeout=60, interval=0.1)
    if problem is None:
        return server
    if proc.poll() is None:
        proc.kill()
    raise RuntimeError(problem)


@contextmanager
def running_server(state: Path, config_yaml: str, *, server_yaml: str = "") -> Iterator[Server]:
    server = start_server(state, config_yaml, server_yaml=server_yaml)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(timeout=10)

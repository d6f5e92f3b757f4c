"""Helpers for tests that start `loramux serve` as a subprocess: a free loopback port,
waiting until the server answers GET /ready (or says why it did not), and stopping it."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(
    proc: subprocess.Popen[bytes],
    url: str,
    output: Callable[[], str],
    *,
    timeout: float,
    interval: float,
) -> str | None:
    """Poll `url`/ready until it answers 200.

    Returns:
        None once the server is ready; else why not (it exited, or `timeout` seconds passed),
        with the end of its output (`output()`).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"loramux serve exited early:\n{output()}"
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return None
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    return f"loramux serve was not ready in {timeout:g} s:\n{output()}"


def stop(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM (a graceful drain), then SIGKILL if it is still running after `timeout` s."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()

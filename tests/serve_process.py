"""Helpers for tests that start `loramux serve` as a subprocess: a free loopback port,
waiting until the server answers GET /ready (or says why it did not), and stopping it;
`serving` does all three around a test."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest


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


@contextmanager
def serving(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    log: Path,
    cwd: Path,
    timeout: float,
    interval: float = 0.5,
    stop_timeout: float = 30,
) -> Iterator[str]:
    """`python -m loramux <args>` on a free port (`LORAMUX_PORT`), its output in `log`: yields
    its URL once it is ready (the test fails, with the end of the log, if it never is), and
    stops it afterwards."""
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "loramux", *args],
            cwd=cwd,
            env={**env, "LORAMUX_PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        problem = wait_ready(
            proc, url, lambda: log.read_text()[-3000:], timeout=timeout, interval=interval
        )
        if problem:
            pytest.fail(problem)
        yield url
    finally:
        stop(proc, stop_timeout)

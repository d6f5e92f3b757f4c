"""Rate limits that hold across the gateways of one PostgreSQL database (`auth.limits_scope:
fleet`).

Each gateway keeps its token buckets in memory (`ratelimit.RateLimiter`) and tells the others
what it consumed: every `interval_s` it sends `NOTIFY loramux_usage` with the requests and real
tokens each key used since the last message, and takes what the others announce from its own
buckets. A key's limit then holds over the fleet within what the gateways can serve before
they hear of each other: about `interval_s` plus the notification's delivery (milliseconds).
Nothing is stored: a gateway that starts begins with full buckets, and a message lost while a
listener reconnects is never counted (the limits fail open).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading

from loramux.errors import LoramuxError
from loramux.keys.ratelimit import RateLimiter
from loramux.storage.postgres import Database, Listener

logger = logging.getLogger(__name__)

USAGE_CHANNEL = "loramux_usage"
"""The NOTIFY channel consumption is announced on."""
MAX_PAYLOAD = 7000
"""Bytes per notification (PostgreSQL's limit is 8000)."""


class FleetLimits:
    """Shares one gateway's rate-limit consumption with the others; see the module docstring."""

    def __init__(self, dsn: str, limiter: RateLimiter, *, interval_s: float = 0.5) -> None:
        """Connect and listen; `run` sends.

        Raises:
            StoreUnavailableError: the database cannot be reached.
        """
        self.gateway = secrets.token_hex(6)
        self.limiter = limiter
        self.interval_s = interval_s
        self._pending: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._db = Database(dsn)
        limiter.on_use = self._used
        self._listener = Listener(dsn, USAGE_CHANNEL, self._heard)

    def _used(self, key: str, requests: int, tokens: int) -> None:
        with self._lock:
            counts = self._pending.setdefault(key, [0, 0])
            counts[0] += requests
            counts[1] += tokens

    def _heard(self, payload: str) -> None:
        if not payload:
            return
        try:
            message = json.loads(payload)
            if message.get("g") == self.gateway:
                return
            for key, (requests, tokens) in message["u"].items():
                self.limiter.absorb(str(key), int(requests), int(tokens))
        except (ValueError, KeyError, TypeError, AttributeError):
            logger.warning("ignored a malformed %s message", USAGE_CHANNEL)

    def flush(self) -> int:
        """Announce what was consumed since the last call; returns the messages sent."""
        with self._lock:
            pending, self._pending = self._pending, {}
        messages: list[str] = []
        chunk: dict[str, list[int]] = {}
        for key, counts in pending.items():
            chunk[key] = counts
            if len(json.dumps(chunk)) > MAX_PAYLOAD - 40:
                messages.append(json.dumps({"g": self.gateway, "u": chunk}))
                chunk = {}
        if chunk:
            messages.append(json.dumps({"g": self.gateway, "u": chunk}))
        if not messages:
            return 0
        try:
            with self._db.reading() as c:
                for message in messages:
                    c.execute("SELECT pg_notify(%s, %s)", (USAGE_CHANNEL, message))
        except LoramuxError:
            with self._lock:  # keep them for the next try
                for key, (requests, tokens) in pending.items():
                    counts = self._pending.setdefault(key, [0, 0])
                    counts[0] += requests
                    counts[1] += tokens
            raise
        return len(messages)

    async def run(self) -> None:
        """Run forever: `flush` every `interval_s`; cancelled, it closes (connections, listener)."""
        try:
            while True:
                await asyncio.sleep(self.interval_s)
                try:
                    await asyncio.to_thread(self.flush)
                except LoramuxError as exc:
                    logger.warning("sharing rate-limit use failed (%s); retrying", exc.message)
        finally:
            await asyncio.to_thread(self.close)

    def close(self) -> None:
        self.limiter.on_use = None
        self._listener.close()
        self._db.close()

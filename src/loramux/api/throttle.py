"""Throttling of failed authentication, as ASGI middleware: 429 for an address that guesses.

Every 401 the app sends (a wrong or missing API key or admin key, a wrong dashboard login)
counts against the client's address in `loramux.keys.throttle.FailureThrottle`. An address
with too many failures in the window gets 429 (`Retry-After`) for every request, before any key
is looked at, until its oldest failure leaves the window (`auth.max_failures`,
`auth.failure_window_s`). Requests from other addresses are not affected, and the health
probes (`/health`, `/ready`) never are.
"""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loramux.api.errors import error_body
from loramux.keys.throttle import FailureThrottle

logger = logging.getLogger(__name__)

EXEMPT_PATHS = frozenset({"/health", "/ready"})


class AuthThrottleMiddleware:
    """Refuses clients with too many failed authentications (429); counts every 401."""

    def __init__(self, app: ASGIApp, *, throttle: FailureThrottle) -> None:
        self.app = app
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"
        wait = self.throttle.retry_after(address)
        if wait is not None:
            await _refuse(send, wait)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.throttle.failed(address)
                if self.throttle.retry_after(address) is not None:
                    logger.warning(
                        "client %s: %d failed authentications within %.0f s; refusing its "
                        "requests for a while",
                        address,
                        self.throttle.max_failures,
                        self.throttle.window_s,
                    )
            await send(message)

        await self.app(scope, receive, counting_send)


async def _refuse(send: Send, retry_after_s: int) -> None:
    body = error_body(
        f"too many failed authentications from this address; retry in {retry_after_s} s "
        "with a valid key",
        "requests",
        code="too_many_failed_authentications",
    )
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"retry-after", str(retry_after_s).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})

"""Request ids and body-size limits, as plain ASGI middleware (cheap on the hot path)."""

from __future__ import annotations

import json
import re
import sys
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loramux.api.errors import error_body
from loramux.errors import LoramuxError, RequestTooLargeError
from loramux.logs import REQUEST_ID

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContextMiddleware:
    """Gives every request an id (the client's `x-request-id` when well formed), echoes it in
    the response headers, sets it as the log context (`loramux.logs.REQUEST_ID`), and refuses
    bodies over the limit with 413: `max_body_bytes`, or `max_upload_bytes` for POSTs to
    `upload_paths` (adapter archives)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        upload_paths: tuple[str, ...] = (),
        max_upload_bytes: int = 0,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.upload_paths = upload_paths
        self.max_upload_bytes = max(max_upload_bytes, max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _CLIENT_ID.match(given) else uuid.uuid4().hex[:24]
        scope.setdefault("state", {})["request_id"] = request_id
        limit = self.max_body_bytes
        if scope["method"] == "POST" and scope["path"] in self.upload_paths:
            limit = self.max_upload_bytes
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _reject_too_large(send, request_id, limit)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge("request body too large")
            return message

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        token = REQUEST_ID.set(request_id)  # log records made for this request carry its id
        try:
            await self.app(scope, limited_receive, send_with_id)
        except _BodyTooLarge:
            await _reject_too_large(send, request_id, limit)
        finally:
            REQUEST_ID.reset(token)


class _BodyTooLarge(RequestTooLargeError):
    """Raised from `receive` when a body without content-length grows past the limit."""


async def _reject_too_large(send: Send, request_id: str, limit: int) -> None:
    body: dict[str, Any] = error_body(
        f"request body is larger than this server's limit of {limit} bytes; send less",
        "invalid_request_error",
        code="request_too_large",
    )
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"x-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class StartupErrorMiddleware:
    """Start-up that fails for a reason loramux explains (a `LoramuxError`: a damaged adapter,
    an engine that cannot start, ...) reaches the server log as that one line, not as the
    traceback Starlette sends uvicorn. Other exceptions (bugs) keep their traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_short(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                # sent from inside Starlette's `except` block: the exception is the current one
                exc = sys.exc_info()[1]
                if isinstance(exc, LoramuxError):
                    message = {**message, "message": f"cannot start: {exc}"}
            await send(message)

        await self.app(scope, receive, send_short)

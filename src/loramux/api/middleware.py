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
from loramux.logs import CLIENT_REQUEST_ID, REQUEST_ID

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContextMiddleware:
    """Gives every request the server's own id, returned in the `x-request-id` response header
    and set as the log context (`loramux.logs.REQUEST_ID`), and refuses bodies over the limit
    with 413: `max_body_bytes`, or `max_upload_bytes` for POSTs to `upload_paths` (adapter
    archives).

    The id is never the client's: records are keyed by it (feedback, A/B results), and an id a
    client chooses could name another department's request. A well-formed `x-request-id` the
    client sends is kept beside it, for tracing: in the request's log lines
    (`client_request_id` in JSON logs) and echoed as `x-client-request-id`."""

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
        client_id = given if _CLIENT_ID.match(given) else None
        request_id = uuid.uuid4().hex[:24]
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["client_request_id"] = client_id
        echoed = [(b"x-request-id", request_id.encode())]
        if client_id is not None:
            echoed.append((b"x-client-request-id", client_id.encode()))
        limit = self.max_body_bytes
        if scope["method"] == "POST" and scope["path"] in self.upload_paths:
            limit = self.max_upload_bytes
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _reject_too_large(send, echoed, limit)
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
                message["headers"] = [*message["headers"], *echoed]
            await send(message)

        token = REQUEST_ID.set(request_id)  # log records made for this request carry its id
        client_token = CLIENT_REQUEST_ID.set(client_id)
        try:
            await self.app(scope, limited_receive, send_with_id)
        except _BodyTooLarge:
            await _reject_too_large(send, echoed, limit)
        finally:
            CLIENT_REQUEST_ID.reset(client_token)
            REQUEST_ID.reset(token)


class _BodyTooLarge(RequestTooLargeError):
    """Raised from `receive` when a body without content-length grows past the limit."""


async def _reject_too_large(send: Send, ids: list[tuple[bytes, bytes]], limit: int) -> None:
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
                *ids,
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

"""Refuse JSON bodies whose strings are not valid Unicode, as plain ASGI middleware.

JSON can spell a lone UTF-16 surrogate (`"\\ud800"`); Python decodes it into a `str` that UTF-8
cannot encode, so it would fail deep inside whatever touches it next (SQLite, a tokenizer, the
response encoder) as a 500. Every JSON body is checked here once instead: the common case costs
one scan of the bytes for `\\ud`; only a body that has one is decoded and walked. A bad body gets
HTTP 400 naming the field. Bodies that are not JSON at all are left to the handlers' own errors.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loramux.api.errors import error_body

_METHODS = frozenset({"POST", "PUT", "PATCH"})


class UnicodeGuardMiddleware:
    """Answers 400 to JSON bodies holding strings with unpaired surrogates."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _METHODS or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        parts: list[bytes] = []
        first: Message = {"type": "http.request", "body": b"", "more_body": False}
        while True:
            message = await receive()
            if message["type"] != "http.request":
                first = message  # the client left: let the app see it
                break
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(parts)
        if first["type"] == "http.request":
            first = {"type": "http.request", "body": body, "more_body": False}
            if b"\\ud" in body or b"\\uD" in body:
                where = lone_surrogate(body)
                if where is not None:
                    await _reject(send, where)
                    return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()

        await self.app(scope, replay, send)


def lone_surrogate(body: bytes) -> str | None:
    """The dotted path of the first string (or key) in a JSON body that is not valid Unicode;
    `""` for the top level, None when there is none or the body is not JSON."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if not _valid(value):
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                if not _valid(key):
                    return path or "(a key)"
                stack.append((child, item))
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}" if path else str(i), item) for i, item in enumerate(value))
    return None


def _valid(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers") or ():
        if name == b"content-type":
            return b"json" in value.lower()
    return True  # no content type: FastAPI reads the body as JSON


async def _reject(send: Send, where: str) -> None:
    field = f"`{where}`" if where else "the body"
    payload = json.dumps(
        error_body(
            f"{field} holds text that is not valid Unicode (an unpaired UTF-16 surrogate such as "
            "\\ud800); send valid UTF-8 text",
            "invalid_request_error",
            param=where or None,
        )
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})

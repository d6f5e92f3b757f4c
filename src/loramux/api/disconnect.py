"""Cancel a generation when its client goes away, as plain ASGI middleware.

Starlette stops a streaming response when the client disconnects, but a plain (non-streaming)
request would run to its last token for nobody. This middleware runs the handler of the
generation endpoints in a task and listens for `http.disconnect` once the request body has been
read; when the client leaves before the response is complete, the handler is cancelled, which
closes the engine's stream (the engine drops the request) and frees its admission slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)


class CancelOnDisconnectMiddleware:
    """Cancels requests to `paths` whose client disconnects before the response is complete."""

    def __init__(self, app: ASGIApp, *, paths: tuple[str, ...]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        disconnected: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        body_read = False
        response_done = False
        watcher: asyncio.Task[None] | None = None

        async def watch() -> None:
            # After the body, the only message a server sends is `http.disconnect`.
            message = await receive()
            if not disconnected.done():
                disconnected.set_result(message)

        async def app_receive() -> Message:
            nonlocal body_read, watcher
            if body_read:
                return await asyncio.shield(disconnected)
            message = await receive()
            if message["type"] == "http.disconnect":
                if not disconnected.done():
                    disconnected.set_result(message)
            elif not message.get("more_body", False):
                body_read = True
                watcher = asyncio.create_task(watch())
            return message

        async def app_send(message: Message) -> None:
            nonlocal response_done
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                response_done = True
            await send(message)

        async def run_app() -> None:
            await self.app(scope, app_receive, app_send)

        handler = asyncio.create_task(run_app())
        cancelled_by_us = False
        try:
            pending: set[asyncio.Future[Any]] = {handler, disconnected}
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if not handler.done() and not response_done:
                cancelled_by_us = True
                logger.info("client went away before the response was complete; cancelling it")
                handler.cancel()
            await handler
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not cancelled_by_us or (task is not None and task.cancelling()):
                raise  # this task itself is being cancelled (server shutdown)
        finally:
            if watcher is not None:
                watcher.cancel()
            if not handler.done():
                handler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await handler

"""FastAPI dependencies for inference endpoints: the authenticated `Caller` of a request.

The gate (`loramux.gateway.access.Gate`) authenticates the bearer token and applies the key's
limits; `MeteredCaller` also takes one request from the key's requests-per-minute allowance
(tokens per minute are charged by the chat service, which knows the prompt and `max_tokens`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from loramux.api.auth import admin_keys, app_service
from loramux.config import AuthSettings
from loramux.gateway.access import Caller, Gate


def gate(request: Request) -> Gate:
    """The app's `Gate`; an app without one accepts admin keys only."""
    found = app_service(request, "gate")
    return found if isinstance(found, Gate) else Gate(AuthSettings(), admin_keys(request))


async def require_caller(request: Request) -> Caller:
    """FastAPI dependency: the authenticated caller (HTTP 401 when there is none).

    Async on purpose, like the other dependencies: a plain `def` would run in a worker thread,
    and that hop costs more than the check (one indexed SQLite read for an API key)."""
    return gate(request).authenticate(request.headers.get("authorization"))


async def require_metered_caller(request: Request) -> Caller:
    """FastAPI dependency: the authenticated caller, with one request counted against its
    requests per minute (HTTP 401, or 429 over the limit)."""
    found = gate(request)
    caller = found.authenticate(request.headers.get("authorization"))
    found.count_request(caller)
    return caller


CallerDep = Annotated[Caller, Depends(require_caller)]
"""A handler parameter that requires an API key (or the admin key) and holds its caller."""
MeteredCaller = Annotated[Caller, Depends(require_metered_caller)]
"""As `CallerDep`, and counts the request against the caller's requests per minute."""

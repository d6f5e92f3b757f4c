"""FastAPI dependencies for admin endpoints: the admin key a request carries.

The keys themselves and their constant-time check are `loramux.keys.admin.AdminKeys`; missing or
wrong keys are refused with 401 in OpenAI's error envelope.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from loramux.keys.admin import AdminKeys


def app_service(request: Request, name: str) -> object | None:
    """One of the app's services: `services.<name>`, or `services.extra[name]` (apps that tests
    build with only some parts), or None."""
    svc = request.app.state.services
    return getattr(svc, name, None) or getattr(svc, "extra", {}).get(name)


def admin_keys(request: Request) -> AdminKeys:
    """The app's `AdminKeys` (none configured when the app has none)."""
    found = app_service(request, "admin_keys")
    return found if isinstance(found, AdminKeys) else AdminKeys({})


async def require_admin(request: Request) -> str:
    """FastAPI dependency: the label of the admin key the request carries.

    Raises:
        AuthenticationError: missing or wrong key (HTTP 401).
    """
    return admin_keys(request).check(request.headers.get("authorization"))


AdminActor = Annotated[str, Depends(require_admin)]
"""A handler parameter that requires the admin key and holds its label."""

"""API key endpoints (admin key required): create, list, rotate, revoke.

`POST /v1/keys` and `POST /v1/keys/{id}/rotate` answer the secret once, in `key`; it is never
shown again. A new key naming adapters the registry does not hold is made, with `warnings`
saying so. Changes are recorded in the registry's audit log under the admin key's label.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from loramux.api.auth import AdminActor, app_service
from loramux.errors import InvalidRequestError, LoramuxError
from loramux.keys.keyring import Keyring
from loramux.keys.records import KeySpec, parse_expiry, unknown_adapter_warnings

router = APIRouter(prefix="/v1", tags=["keys"])


class KeyCreate(BaseModel):
    """`POST /v1/keys`: a key for one department."""

    model_config = ConfigDict(extra="forbid")

    department: str
    adapters: list[str] = Field(default_factory=list)
    """Adapter names the key may use (with `model: "auto"` too); they need not exist yet."""
    base: StrictBool = True
    """May use the base model (named, or as `auto`'s fallback)."""
    rag: StrictBool = True
    """May get RAG answers (`auto`'s fallback when the knowledge base matches)."""
    rpm: int | None = Field(default=None, ge=1, le=10**9)  # le: SQLite holds 64-bit integers
    """Requests per minute; default `auth.rpm` of the server."""
    tpm: int | None = Field(default=None, ge=1, le=10**12)
    """Prompt + completion tokens per minute; default `auth.tpm` of the server."""
    label: str = Field(default="", max_length=200)
    expires_in: str | None = Field(default=None, max_length=64)
    """When the key stops working: a duration (`30d`, `12h`, `90m`, `2w`) or an ISO date or
    time (`2027-01-31`, UTC unless it has a zone); default never. An expired key gets 401."""
    expires_at: float | None = Field(default=None, gt=0)
    """The same as Unix time (for scripts); give at most one of the two."""
    weight: float = Field(default=1.0, ge=0.001, le=1000, allow_inf_nan=False)
    """Share of generation slots under load (`limits.fair_share`); 2: twice a weight-1 key's."""


def keyring(request: Request) -> Keyring:
    """The app's keyring."""
    found = app_service(request, "keyring")
    if not isinstance(found, Keyring):
        raise LoramuxError("API keys are not enabled on this server")
    return found


async def _keyring_dependency(request: Request) -> Keyring:
    return keyring(request)  # async: no worker-thread hop per request


Keys = Annotated[Keyring, Depends(_keyring_dependency)]


@router.post("/keys")
async def create_key(
    body: KeyCreate, keys: Keys, actor: AdminActor, request: Request
) -> JSONResponse:
    if body.expires_in is not None and body.expires_at is not None:
        raise InvalidRequestError("give `expires_in` or `expires_at`, not both", param="expires_in")
    expires_at = body.expires_at
    if body.expires_in is not None:
        expires_at = parse_expiry(body.expires_in, keys.clock())
    spec = KeySpec(
        department=body.department,
        adapters=tuple(body.adapters),
        base=body.base,
        rag=body.rag,
        rpm=body.rpm,
        tpm=body.tpm,
        label=body.label,
        expires_at=expires_at,
        weight=body.weight,
    )
    issued = await asyncio.to_thread(keys.create, spec, actor=actor)
    payload: dict[str, Any] = {**issued.record.public(), "key": issued.secret}
    registry = app_service(request, "registry")
    adapters = getattr(registry, "adapters", None)
    if callable(adapters):
        warnings = unknown_adapter_warnings(spec.adapters, (a.name for a in adapters()))
        if warnings:
            payload["warnings"] = warnings
    return JSONResponse(payload, status_code=201)


@router.get("/keys")
async def list_keys(keys: Keys, actor: AdminActor) -> dict[str, Any]:
    return {"object": "list", "data": [k.public() for k in keys.list_keys()]}


@router.post("/keys/{key_id}/rotate")
async def rotate_key(key_id: str, keys: Keys, actor: AdminActor) -> JSONResponse:
    """A new secret for a key (answered once, in `key`): same id, department, access, limits
    and expiry; the old secret is refused from the next request on."""
    issued = await asyncio.to_thread(keys.rotate, key_id, actor=actor)
    return JSONResponse({**issued.record.public(), "key": issued.secret})


@router.delete("/keys/{key_id}")
async def revoke_key(key_id: str, keys: Keys, actor: AdminActor) -> dict[str, Any]:
    """Revoke a key; it stops working on the next request."""
    record = await asyncio.to_thread(keys.revoke, key_id, actor=actor)
    return record.public()

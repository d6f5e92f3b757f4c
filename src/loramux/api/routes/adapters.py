"""Adapter registry endpoints: register versions, split traffic, promote, roll back, retire,
delete, experiments, and user feedback.

Handlers are thin: they fetch the `AdapterRegistry` from the app's services, call one method,
and turn the result into JSON. Changes need the admin key (`Authorization: Bearer <key>`); its
label is recorded as who made the change. Reads need a key while auth is on: a department key
sees only the adapters it may use (others are 404s) and no audit log. Responses never show file
paths.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from loramux.adapters.archive import save_upload
from loramux.adapters.public import adapter_json, audit_json, version_json
from loramux.adapters.registrar import Registration
from loramux.adapters.registry import AdapterRegistry
from loramux.api.access import CallerDep
from loramux.api.auth import AdminActor, app_service
from loramux.errors import InvalidRequestError, LoramuxError

router = APIRouter(prefix="/v1", tags=["adapters"])

MAX_FORM_FIELD_BYTES = 256 << 10
_M = TypeVar("_M", bound=BaseModel)


class _Admin(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AdapterCreate(_Admin):
    """`POST /v1/adapters` with JSON: register a PEFT folder that is on the server."""

    name: str
    path: str
    """A PEFT folder on the server (within `registry.import_roots` when that is set)."""
    department: str | None = None
    description: str | None = None
    utterances: list[str] | None = None


class TrafficUpdate(_Admin):
    versions: dict[str, StrictInt]
    """Version id -> integer weight; weights sum to 100."""
    revision: StrictInt | None = None
    """The adapter's `revision` this change was decided from (`GET /v1/adapters/{name}`):
    when the adapter changed since (on any gateway), 409 instead of overwriting that change."""


class PromoteRequest(_Admin):
    version: str
    revision: StrictInt | None = None
    """As `TrafficUpdate.revision`."""


class FeedbackCreate(BaseModel):
    request_id: str = Field(min_length=1, max_length=64)
    """The `x-request-id` response header of the response being rated (the server's id; the
    chat completion's `id` is `chatcmpl-<it>`), never an id the client sent."""
    rating: Literal["up", "down"]
    comment: str = Field(default="", max_length=2000)


def registry(request: Request) -> AdapterRegistry:
    """The app's registry."""
    found = app_service(request, "registry")
    if not isinstance(found, AdapterRegistry):
        raise LoramuxError("the adapter registry is not enabled on this server")
    return found


async def _registry_dependency(request: Request) -> AdapterRegistry:
    return registry(request)  # async: no worker-thread hop per request


Registry = Annotated[AdapterRegistry, Depends(_registry_dependency)]

# The handler reads its body itself (JSON or multipart), so the OpenAPI schema says what it takes.
_CREATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": AdapterCreate.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "name"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "name": {"type": "string"},
                        "department": {"type": "string"},
                        "description": {"type": "string"},
                        "utterances": {"type": "string"},
                    },
                }
            },
        },
    }
}


@router.post("/adapters", response_model=None, openapi_extra=_CREATE_BODY)
async def create_adapter(request: Request, reg: Registry, actor: AdminActor) -> JSONResponse:
    """Register a version: JSON `{name, path, ...}`, or a multipart upload of an archive
    (`file`) with form fields name, department, description, utterances."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        result = await _register_upload(request, reg, actor)
    else:
        body = _parse(AdapterCreate, await request.body())
        result = await reg.register(
            Path(body.path),
            name=body.name,
            actor=actor,
            department=body.department,
            description=body.description,
            utterances=body.utterances,
        )
    adapter, versions = reg.get(result.adapter.name)
    dispatcher = getattr(request.app.state.services, "dispatcher", None)
    if dispatcher is not None:
        await dispatcher.learn_route(adapter.name, adapter.utterances)
    payload = {
        "created": result.created,
        "version": version_json(result.version, adapter),
        "adapter": adapter_json(adapter, versions),
    }
    return JSONResponse(payload, status_code=201 if result.created else 200)


@router.get("/adapters")
async def list_adapters(reg: Registry, caller: CallerDep) -> dict[str, Any]:
    """The adapters the caller's key may use (every adapter for the admin key)."""
    data = [adapter_json(a, reg.get(a.name)[1]) for a in reg.adapters(caller.visible)]
    return {"object": "list", "data": data}


@router.get("/adapters/{name}")
async def show_adapter(name: str, reg: Registry, caller: CallerDep) -> dict[str, Any]:
    """One adapter the caller's key may use (404 for others); the audit log (who changed what)
    only for the admin key."""
    adapter, versions = reg.get(name, caller.visible)
    shown = adapter_json(adapter, versions)
    if caller.privileged:
        shown["audit"] = [audit_json(e) for e in reg.audit_log(name, limit=20)]
    return shown


@router.put("/adapters/{name}/traffic")
async def set_traffic(
    name: str, body: TrafficUpdate, reg: Registry, actor: AdminActor
) -> dict[str, Any]:
    adapter = await reg.set_traffic(name, body.versions, actor=actor, revision=body.revision)
    return adapter_json(adapter, reg.get(name)[1])


@router.post("/adapters/{name}/promote")
async def promote(
    name: str, body: PromoteRequest, reg: Registry, actor: AdminActor
) -> dict[str, Any]:
    adapter = await reg.promote(name, body.version, actor=actor, revision=body.revision)
    return adapter_json(adapter, reg.get(name)[1])


@router.post("/adapters/{name}/rollback")
async def rollback(
    name: str, reg: Registry, actor: AdminActor, revision: int | None = None
) -> dict[str, Any]:
    """Send all traffic back to the previous main version (from the audit log); 409 when
    there is none, or it was retired, or the adapter is no longer at `?revision=`."""
    adapter = await reg.rollback(name, actor=actor, revision=revision)
    return adapter_json(adapter, reg.get(name)[1])


@router.delete("/adapters/{name}")
async def delete_adapter(
    name: str,
    reg: Registry,
    actor: AdminActor,
    request: Request,
    force: bool = False,
    revision: int | None = None,
) -> dict[str, Any]:
    """Delete an adapter with every version and its files; 409 while it serves traffic (a
    request in the last `registry.delete_idle_s`, or pinned) unless `?force=true`, or when it
    is no longer at `?revision=`."""
    adapter = await reg.delete(name, actor=actor, force=force, revision=revision)
    dispatcher = getattr(request.app.state.services, "dispatcher", None)
    if dispatcher is not None:
        await dispatcher.forget_route(adapter.name)
    return {"object": "adapter.deleted", "name": adapter.name, "deleted": True}


@router.post("/adapters/{name}/versions/{version}/retire")
async def retire(
    name: str, version: str, reg: Registry, actor: AdminActor, revision: int | None = None
) -> dict[str, Any]:
    """Retire a version (no traffic may reach it); 409 while it has traffic, or when the
    adapter is no longer at `?revision=`."""
    record = await reg.retire(name, version, actor=actor, revision=revision)
    return version_json(record, reg.get(name)[0])


@router.put("/adapters/{name}/pin")
async def pin(name: str, reg: Registry, actor: AdminActor) -> dict[str, Any]:
    """Pin an adapter: its versions with traffic are loaded now and never evicted (409 when the
    pins would take every adapter slot of the engine)."""
    adapter = await reg.set_pinned(name, True, actor=actor)
    return adapter_json(adapter, reg.get(name)[1])


@router.delete("/adapters/{name}/pin")
async def unpin(name: str, reg: Registry, actor: AdminActor) -> dict[str, Any]:
    """Unpin an adapter: its versions may be evicted again when others need the slot."""
    adapter = await reg.set_pinned(name, False, actor=actor)
    return adapter_json(adapter, reg.get(name)[1])


@router.get("/adapters/{name}/experiment")
async def experiment(name: str, reg: Registry, caller: CallerDep) -> dict[str, Any]:
    """The A/B results of an adapter the caller's key may use (404 for others)."""
    reg.get(name, caller.visible)
    report = await asyncio.to_thread(reg.experiment, name)
    return {"object": "experiment", **dataclasses.asdict(report)}


@router.post("/feedback")
async def feedback(
    body: FeedbackCreate, reg: Registry, caller: CallerDep, request: Request
) -> dict[str, Any]:
    """Rate a response (by the `x-request-id` the server returned with it); counted for the
    version that produced it. Only the key that made the request (or the admin key) may rate
    it; another key gets the 404 of an unknown request. Needs a key unless auth is off."""
    saved = await reg.record_feedback(
        body.request_id,
        body.rating,
        body.comment,
        key_id=None if caller.privileged else caller.id,
    )
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.observe_feedback(saved.adapter, saved.version, saved.experiment_id, saved.rating)
    return {
        "object": "feedback",
        "request_id": saved.request_id,
        "adapter": saved.adapter,
        "version": saved.version,
        "rating": saved.rating,
    }


# -- request parsing -----------------------------------------------------------------------


def _parse(model: type[_M], raw: bytes) -> _M:
    """Validate a JSON body read by hand (the route also takes multipart), reporting problems
    as FastAPI does for declared bodies."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc


async def _register_upload(request: Request, reg: AdapterRegistry, actor: str) -> Registration:
    if importlib.util.find_spec("python_multipart") is None:
        raise LoramuxError(
            "this server cannot read uploads (python-multipart is not installed); register a "
            'server-side folder with JSON {"name": ..., "path": ...} instead'
        )
    form = await request.form(max_files=1, max_fields=8, max_part_size=MAX_FORM_FIELD_BYTES)
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InvalidRequestError(
                "send the adapter archive (.zip or .tar.gz) in the form field `file`",
                param="file",
            )
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if not fields.get("name"):
            raise InvalidRequestError("missing required form field `name`", param="name")
        name = fields["name"]
        folder = reg.files.new_upload()  # in the data dir: a restart removes a crash's leftover
        try:
            archive = await asyncio.to_thread(
                save_upload, upload.file, folder / "upload", reg.settings.limits, name=name
            )
            return await reg.register_archive(
                archive,
                name=name,
                actor=actor,
                department=fields.get("department"),
                description=fields.get("description"),
                utterances=_utterances(fields.get("utterances")),
            )
        finally:
            await asyncio.to_thread(reg.files.discard, folder)
    finally:
        await form.close()


def _utterances(raw: str | None) -> list[str] | None:
    """A JSON list of strings, or one utterance per line."""
    if raw is None:
        return None
    if raw.lstrip().startswith("["):
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise InvalidRequestError(
                "`utterances` is not a valid JSON list", param="utterances"
            ) from exc
        if not isinstance(value, list) or not all(isinstance(u, str) for u in value):
            raise InvalidRequestError("`utterances` must be a list of strings", param="utterances")
        return value
    return [line.strip() for line in raw.splitlines() if line.strip()]

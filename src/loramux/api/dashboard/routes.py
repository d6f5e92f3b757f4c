"""The dashboard's endpoints under `/ui`: log in, pages, the split form, chart data, files.

Handlers are thin: they check the session, read the registry and the app's recent activity, and
render a page (`views`). A traffic change calls the same `AdapterRegistry.set_traffic` as
`PUT /v1/adapters/{name}/traffic`, so it is checked the same way and recorded in the audit log
under the label of the admin key that logged in.
"""

from __future__ import annotations

import asyncio
import time
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from loramux.adapters.public import adapter_json
from loramux.api.auth import admin_keys
from loramux.api.dashboard import views
from loramux.api.dashboard.charts import list_charts, resolve_chart
from loramux.api.dashboard.session import (
    COOKIE_PATH,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Session,
    SessionSigner,
)
from loramux.api.errors import error_body
from loramux.api.routes.adapters import registry
from loramux.errors import AuthenticationError, LoramuxError
from loramux.gateway.metrics import GatewayMetrics
from loramux.gateway.services import AppServices

router = APIRouter(prefix="/ui", include_in_schema=False)

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


def _signer(request: Request) -> SessionSigner:
    signer: SessionSigner = request.app.state.ui_sessions
    return signer


def _services(request: Request) -> AppServices:
    svc: AppServices = request.app.state.services
    return svc


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


def _session(request: Request) -> Session | None:
    return _signer(request).verify(request.cookies.get(SESSION_COOKIE))


def _to_login() -> RedirectResponse:
    return RedirectResponse("/ui/login", status_code=303, headers=SECURITY_HEADERS)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


@router.get("/login", response_model=None)
async def login_form(request: Request) -> Response:
    if _session(request) is not None:
        return RedirectResponse("/ui", status_code=303)
    return _login_page(request)


def _login_page(request: Request, error: str = "", status: int = 200) -> HTMLResponse:
    nonce = SessionSigner.login_nonce()
    configured = admin_keys(request).configured
    response = _html(views.login(nonce, error=error, configured=configured), status)
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=3600,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


@router.post("/login", response_model=None)
async def login(request: Request) -> Response:
    """Check the admin key and start a session; the key itself is not kept."""
    form = await request.form(max_files=0, max_fields=4)
    nonce, key = form.get("nonce"), form.get("key")
    cookie = request.cookies.get(LOGIN_COOKIE)
    if not isinstance(nonce, str) or not cookie or nonce != cookie:
        return _login_page(request, "The login form expired; try again.", 403)
    try:
        label = admin_keys(request).check(f"Bearer {key if isinstance(key, str) else ''}")
    except AuthenticationError as exc:
        return _login_page(request, exc.message, 401)
    response = RedirectResponse("/ui", status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(
        SESSION_COOKIE,
        _signer(request).issue(label),
        max_age=int(_signer(request).ttl_s),
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
    return response


@router.post("/logout", response_model=None)
async def logout(request: Request) -> Response:
    session = _session(request)
    form = await request.form(max_files=0, max_fields=4)
    if session is not None and not _signer(request).check_csrf(session, _field(form, "csrf")):
        return _html(views.page("Refused", "<p>Missing or wrong form token.</p>"), 403)
    response = _to_login()
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


@router.get("", response_model=None)
async def overview(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _to_login()
    changed = request.query_params.get("changed")
    known = changed is not None and any(a.name == changed for a in registry(request).adapters())
    note = f"Traffic split of {changed} changed." if known else ""
    return _html(_overview(request, session, message=note))


def _overview(request: Request, session: Session, *, message: str = "", error: str = "") -> str:
    svc = _services(request)
    reg = registry(request)
    metrics: GatewayMetrics = request.app.state.metrics
    adapters = [adapter_json(a, reg.get(a.name)[1]) for a in reg.adapters()]
    sample = metrics.registry.get_sample_value
    status = {
        "base model": svc.config.model.id,
        "engine": f"{svc.engine.name} ({'ready' if svc.engine.ready else 'not ready'})",
        "up for": f"{int(time.time() - svc.started_at)} s",
        "router": f"{len(svc.router.routes)} routes" if svc.router else "off",
        "knowledge base": f"{len(svc.kb)} passages" if svc.kb else "off",
        "abstention rate": f"{sample('loramux_router_rate', {'kind': 'abstention'}) or 0:.1%}",
        "RAG rate": f"{sample('loramux_router_rate', {'kind': 'rag'}) or 0:.1%}",
        "queue depth": f"{metrics.queue_depth():.0f}",
        "logged in as": session.label,
    }
    return views.overview(
        csrf=_signer(request).csrf(session),
        status=status,
        adapters=adapters,
        loaded=svc.engine.loaded_adapters(),
        message=message,
        error=error,
    )


def _field(form: Any, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


@router.post("/adapters/{name}/traffic", response_model=None)
async def change_split(name: str, request: Request) -> Response:
    """Set an adapter's split from the form's `w_<version>` fields (through the registry)."""
    session = _session(request)
    if session is None:
        return _to_login()
    form = await request.form(max_files=0, max_fields=64)
    if not _signer(request).check_csrf(session, _field(form, "csrf")):
        return _html(views.page("Refused", "<p>Missing or wrong form token.</p>"), 403)
    weights: dict[str, int] = {}
    for key, value in form.items():
        if not key.startswith("w_") or not isinstance(value, str):
            continue
        text = value.strip() or "0"
        if not text.isdigit():
            error = f"the weight of {key[2:]} must be a whole number from 0 to 100"
            return _html(_overview(request, session, error=error), 400)
        weights[key[2:]] = int(text)
    try:
        await registry(request).set_traffic(name, weights, actor=session.label)
    except LoramuxError as exc:
        return _html(_overview(request, session, error=exc.message), 400)
    return RedirectResponse(
        f"/ui?changed={name}#adapter-{name}", status_code=303, headers=SECURITY_HEADERS
    )


@router.get("/decisions", response_model=None)
async def decisions(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _to_login()
    metrics: GatewayMetrics = request.app.state.metrics
    csrf = _signer(request).csrf(session)
    rows = metrics.activity.recent()
    return _html(views.decisions(rows, csrf=csrf, show_texts=metrics.activity.keep_texts))


@router.get("/experiments", response_model=None)
async def experiments(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _to_login()
    reg = registry(request)
    reports = [await asyncio.to_thread(reg.experiment, a.name) for a in reg.adapters()]
    confidence = _services(request).config.registry.experiment.confidence
    csrf = _signer(request).csrf(session)
    return _html(views.experiments(reports, csrf=csrf, confidence=confidence))


def _charts_dir(request: Request) -> Path:
    config = _services(request).config
    return config.dashboard.eval_dir or config.paths.data_dir / "eval"


@router.get("/eval", response_model=None)
async def evaluation(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _to_login()
    folder = _charts_dir(request)
    charts = await asyncio.to_thread(list_charts, folder)
    csrf = _signer(request).csrf(session)
    return _html(views.evaluation(charts, csrf=csrf, folder=str(folder)))


@router.get("/eval/files/{path:path}", response_model=None)
async def chart_file(path: str, request: Request) -> Response:
    if _session(request) is None:
        return _unauthorized()
    found = resolve_chart(_charts_dir(request), path)
    if found is None:
        return JSONResponse(
            error_body(f"no chart {path!r}", "invalid_request_error", code="not_found"), 404
        )
    return FileResponse(found, media_type="image/png", headers=SECURITY_HEADERS)


@router.get("/api/traffic", response_model=None)
async def traffic(request: Request) -> Response:
    """Requests per second by route over the last minutes (the live chart's data)."""
    if _session(request) is None:
        return _unauthorized()
    metrics: GatewayMetrics = request.app.state.metrics
    return JSONResponse(metrics.activity.timeline(), headers={"cache-control": "no-store"})


def _unauthorized() -> JSONResponse:
    body = error_body("log in at /ui/login first", "authentication_error", code="invalid_session")
    return JSONResponse(body, status_code=401)


@router.get("/static/{name}", response_model=None)
async def static(name: str) -> Response:
    if name not in STATIC:
        return JSONResponse(
            error_body(f"no file {name!r}", "invalid_request_error", code="not_found"), 404
        )
    data = resources.files("loramux.api.dashboard").joinpath("static", name).read_bytes()
    return Response(data, media_type=STATIC[name], headers={"cache-control": "no-cache"})

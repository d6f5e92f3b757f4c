"""Maps every error to OpenAI's envelope `{"error": {"message", "type", "param", "code"}}`, once.

Typed `LoramuxError`s carry their own status; request validation errors become 400s that name
the field; unknown paths 404; anything unexpected a 500 that says the request id and shows no
stack trace (the trace goes to the server log).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from loramux.errors import AuthenticationError, LoramuxError, RateLimitError

logger = logging.getLogger(__name__)


def error_body(
    message: str, type_: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "message": _utf8(message),
            "type": type_,
            "param": None if param is None else _utf8(param),
            "code": code,
        }
    }


def _utf8(text: str) -> str:
    """`text` with what UTF-8 cannot encode (lone surrogates from JSON `\\ud800` escapes that
    a message may quote back) replaced, so an error about bad input can always be sent."""
    return text.encode("utf-8", "replace").decode("utf-8")


def error_response(
    status: int,
    message: str,
    type_: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(message, type_, param=param, code=code), status_code=status, headers=headers
    )


def from_loramux_error(exc: LoramuxError) -> JSONResponse:
    headers = None
    if isinstance(exc, RateLimitError):
        headers = {"retry-after": str(exc.retry_after_s)}
    elif isinstance(exc, AuthenticationError):
        headers = {"www-authenticate": "Bearer"}
    elif exc.retry_after_s is not None:  # 503s: overloaded, engine restarting, draining
        headers = {"retry-after": str(exc.retry_after_s)}
    return error_response(
        exc.status, exc.message, exc.type, param=exc.param, code=exc.code, headers=headers
    )


_TYPE_TAGS = {"str", "int", "float", "bool", "dict", "list", "none", "function-after"}


def _is_field(part: object) -> bool:
    """True for a location part that names a field or an index, not a union member pydantic
    tried (`str`, `list[TextPart]`, `NamedToolChoice`, `literal['auto']`)."""
    if isinstance(part, int):
        return True
    text = str(part)
    return not ("[" in text or text[:1].isupper() or text in _TYPE_TAGS or text == "body")


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    # A field OpenAI does not define is the clearest thing to name, whatever else is wrong.
    unknown = [e for e in errors if e.get("type") == "extra_forbidden"]

    def depth(error: Any) -> int:
        return sum(1 for p in error.get("loc", ()) if _is_field(p))

    # Else the most specific: of the branches of a union (`str | list[TextPart]`), the one that
    # got furthest into the value says best what is wrong with it.
    first = unknown[0] if unknown else max(errors, key=depth)
    loc = [str(p) for p in first.get("loc", ()) if _is_field(p)]
    param = ".".join(loc) or None
    if first.get("type") == "extra_forbidden":
        return (
            f"unrecognized request argument supplied: {param} (loramux refuses fields that are "
            "not in the OpenAI API; docs/api.md lists what each field does)",
            param,
        )
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON; send a JSON object", None
    if first.get("type") == "missing":
        if param is None:
            return "the request body is empty; send a JSON object", None
        return f"missing required field `{param}`", param
    message = (
        f"invalid value for `{param}`: {first.get('msg', 'invalid')}"
        if param
        else str(first.get("msg", "invalid request"))
    )
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return message, param


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LoramuxError)
    async def _loramux(request: Request, exc: LoramuxError) -> JSONResponse:
        if exc.status >= 500:
            logger.warning("request %s failed: %s", _rid(request), exc.message)
        return from_loramux_error(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_response(400, message, "invalid_request_error", param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 400 and message == "There was an error parsing the body":
            # FastAPI's words for a body that is not UTF-8, or JSON nested too deeply to parse.
            message = (
                "the request body could not be parsed: send a JSON object in UTF-8, nested "
                "no deeper than a few hundred levels"
            )
        return error_response(
            exc.status_code,
            message,
            "invalid_request_error",
            code=code,
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("request %s: unexpected error", _rid(request))
        return error_response(
            500,
            f"internal error while handling request {_rid(request)}; it has been logged",
            "server_error",
        )


def _rid(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))

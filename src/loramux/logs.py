"""Log lines: text or one JSON object per line, each carrying the id of the request it is about.

The API's request-id middleware sets `REQUEST_ID` for the duration of a request; every record
logged meanwhile (in the request's task, its stream, and threads started with
`asyncio.to_thread`) carries that id. `configure_logging` is called once, by the CLI. What is
logged is the caller's business: loramux never logs prompts or completions at INFO or above.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

REQUEST_ID: ContextVar[str | None] = ContextVar("loramux_request_id", default=None)
"""The server's id of the HTTP request being handled (None outside a request)."""
CLIENT_REQUEST_ID: ContextVar[str | None] = ContextVar("loramux_client_request_id", default=None)
"""The `x-request-id` the client sent with the request, if any: kept for tracing only."""

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else was passed with `extra=` and is kept in JSON
# (uvicorn's `color_message` is its message with terminal colour codes: left out).
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "request_id", "client_request_id", "taskName", "color_message"}
)
# Set (unless already set) for JSON logs: libraries' progress bars and transformers' own text
# handler would put lines on stderr that are not JSON. transformers still reports errors.
QUIET_ENV = {
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


class RequestIdFilter(logging.Filter):
    """Adds `record.request_id` (the current request's id, or None)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (UTC, ISO 8601), level, logger, message, request_id, and
    the fields given with `extra=`; `exc` holds the traceback of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or REQUEST_ID.get(),
        }
        client_id = CLIENT_REQUEST_ID.get()
        if client_id is not None:
            line["client_request_id"] = client_id
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def make_handler(fmt: LogFormat, stream: TextIO | None = None) -> logging.Handler:
    """A stream handler (stderr by default) writing `fmt` lines with request ids attached."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RequestIdFilter())
    return handler


def configure_logging(level: str, fmt: LogFormat = "text") -> None:
    """Send every logger's records to stderr as `fmt` lines, from `level` up.

    Replaces handlers a previous call installed on the root logger, so calling it again (tests,
    a second command in one process) changes the format instead of doubling each line. For
    `json` it also turns off libraries' progress bars (`QUIET_ENV`), which are not log lines.
    """
    if fmt == "json":
        for name, value in QUIET_ENV.items():
            os.environ.setdefault(name, value)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_loramux", False)]:
        root.removeHandler(old)
    handler = make_handler(fmt)
    handler._loramux = True  # type: ignore[attr-defined]  # marks the handlers we own
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    # faiss logs each CPU-specific build it tries and fails to load; that is not news.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)

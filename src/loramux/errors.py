"""Typed errors of loramux.

Every error a user can cause or meet is a `LoramuxError` subclass that carries what the API needs
to answer in OpenAI's envelope (`status`, `type`, `code`, `param`). The API maps them in one place
(`loramux.api.errors`); the CLI prints `message` as one line. Messages say what to do next.
"""

from __future__ import annotations


class LoramuxError(Exception):
    """Base class: an error with a message meant for the user."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None
    retry_after_s: int | None = None
    """Whole seconds after which the same request may succeed (the `Retry-After` header)."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class ConfigError(LoramuxError):
    """A configuration file or override is invalid."""

    status = 500
    type = "configuration_error"
    code = "invalid_config"


class InvalidRequestError(LoramuxError):
    """The request is malformed or asks for something out of bounds (HTTP 400)."""

    status = 400
    type = "invalid_request_error"


class RequestTooLargeError(InvalidRequestError):
    """The request body is over the server's size limit (HTTP 413)."""

    status = 413
    code = "request_too_large"


class ContextLengthExceededError(InvalidRequestError):
    """The prompt (plus the requested completion) does not fit in the model's context."""

    code = "context_length_exceeded"


class ModelNotFoundError(LoramuxError):
    """The `model` names neither the base model nor a known adapter (HTTP 404)."""

    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class AdapterError(LoramuxError):
    """An adapter folder is missing, unsafe or does not fit the base model."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_adapter"


class ModelFetchError(LoramuxError):
    """An embedded default model could not be fetched, checked or converted."""

    status = 500
    type = "server_error"
    code = "model_unavailable"


class EngineUnavailableError(LoramuxError):
    """The engine is not running or not ready (HTTP 503, `Retry-After`)."""

    status = 503
    type = "server_error"
    code = "engine_unavailable"
    retry_after_s = 1

    def __init__(self, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s


class ServerOverloadedError(EngineUnavailableError):
    """Every generation slot is busy and the waiting queue is full, or a request waited too long
    for a slot (HTTP 503, `Retry-After`)."""

    code = "server_overloaded"


class AdapterUnavailableError(EngineUnavailableError):
    """A registered adapter version cannot be loaded into the engine: its files vanished or
    changed since registration (HTTP 503 naming the version; other adapters keep serving)."""

    code = "adapter_unavailable"


class ShuttingDownError(EngineUnavailableError):
    """The server is draining before it stops and takes no new generations (HTTP 503)."""

    code = "shutting_down"


class RequestTimeoutError(LoramuxError):
    """A generation ran past the server's request timeout and was cancelled (HTTP 504)."""

    status = 504
    type = "server_error"
    code = "request_timeout"


class EngineError(LoramuxError):
    """The engine failed while generating (HTTP 500); the request can be retried."""

    status = 500
    type = "server_error"
    code = "engine_error"


class RouterNotFittedError(LoramuxError):
    """The router has no routes to choose from, or its fitted files are missing or inconsistent."""

    status = 503
    type = "server_error"
    code = "router_not_ready"


class CalibrationDataError(LoramuxError):
    """A labelled routing data file (JSONL) has a bad line; the message names file and line."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_routing_data"


class KnowledgeBaseError(LoramuxError):
    """The knowledge base is missing, unreadable, or was built with another embedder."""

    status = 500
    type = "server_error"
    code = "knowledge_base_error"


class AdapterNotFoundError(AdapterError):
    """The registry has no adapter, or no such version of it (HTTP 404)."""

    status = 404
    code = "adapter_not_found"


class AdapterConflictError(AdapterError):
    """A registry change conflicts with its current state, e.g. retiring a version that still
    has traffic (HTTP 409)."""

    status = 409
    code = "adapter_conflict"


class AdapterTooLargeError(AdapterError):
    """An adapter upload, archive or folder is over the registry's size limits (HTTP 413)."""

    status = 413
    code = "adapter_too_large"


class ArchiveError(AdapterError):
    """An uploaded adapter archive is unreadable or unsafe to extract (HTTP 400)."""

    code = "invalid_archive"


class AuthenticationError(LoramuxError):
    """The request has no valid key for what it asks (HTTP 401)."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class UnknownRequestError(InvalidRequestError):
    """Feedback names a request id the server has no record of (HTTP 404)."""

    status = 404
    code = "request_not_found"


class PermissionDeniedError(LoramuxError):
    """The API key is valid but may not use what the request asks for (HTTP 403)."""

    status = 403
    type = "invalid_request_error"
    code = "permission_denied"


class KeyNotFoundError(LoramuxError):
    """No API key has this id (HTTP 404)."""

    status = 404
    type = "invalid_request_error"
    code = "api_key_not_found"


class RateLimitError(LoramuxError):
    """The API key used up its requests or tokens per minute (HTTP 429, `Retry-After`).

    `type` says which limit, as OpenAI does: `requests` or `tokens`.
    """

    status = 429
    type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: int, limit: str = "requests") -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        """Whole seconds until the request can succeed (the `Retry-After` header)."""
        self.type = limit


class StoreUnavailableError(LoramuxError):
    """The shared registry database (PostgreSQL) cannot be reached or timed out (HTTP 503,
    `Retry-After`); nothing was half-written (each change is one transaction)."""

    status = 503
    type = "server_error"
    code = "store_unavailable"
    retry_after_s = 1

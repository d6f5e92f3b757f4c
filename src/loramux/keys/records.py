"""What an API key is: the record stored for it, what it may use (`Access`), and what a new key
asks for (`KeySpec`).

Values only: checking them against a request happens in `Access`; storing them in
`loramux.keys.store`; issuing and revoking in `loramux.keys.keyring`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from loramux.config import check_adapter_name
from loramux.errors import InvalidRequestError, PermissionDeniedError

DEPARTMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_LABEL_CHARS = 200
MAX_WEIGHT = 1000.0
"""Largest `weight` of a key (and 1/MAX_WEIGHT the smallest)."""


@dataclass(frozen=True)
class Access:
    """What a caller may use: some adapters (None: every adapter), the base model, RAG answers."""

    adapters: frozenset[str] | None = None
    base: bool = True
    rag: bool = True

    def may_use_adapter(self, name: str) -> bool:
        return self.adapters is None or name in self.adapters

    def describe(self) -> str:
        """What the caller may use, for error messages."""
        parts = ["every adapter"] if self.adapters is None else sorted(self.adapters)
        if self.base:
            parts.append("the base model")
        if self.rag:
            parts.append("RAG answers")
        return ", ".join(parts) or "nothing"

    def require_adapter(self, name: str) -> None:
        """Raises: PermissionDeniedError: the caller may not use adapter `name`."""
        if not self.may_use_adapter(name):
            raise PermissionDeniedError(
                f"this API key may not use adapter {name!r}; it may use: {self.describe()}. "
                "Ask an admin for a key that lists it (`loramux keys create --adapters ...`)",
                param="model",
            )

    def require_base(self, model_id: str) -> None:
        """Raises: PermissionDeniedError: the caller may not use the base model."""
        if not self.base:
            raise PermissionDeniedError(
                f"this API key may not use the base model {model_id!r}; it may use: "
                f"{self.describe()}",
                param="model",
            )


EVERYTHING = Access()
"""The access of admin keys, and of every request while auth is off."""


@dataclass(frozen=True)
class KeySpec:
    """What a new key is for; `check()` says what is wrong with it."""

    department: str
    adapters: tuple[str, ...]
    base: bool = True
    rag: bool = True
    rpm: int | None = None
    """Requests per minute; None: the server's default (`auth.rpm`)."""
    tpm: int | None = None
    """Prompt + completion tokens per minute; None: the server's default (`auth.tpm`)."""
    label: str = ""
    weight: float = 1.0
    """The key's share of generation slots under load (`limits.fair_share`): its department is
    served `weight` times the tokens of a weight-1 department before waiting behind it."""

    def check(self) -> KeySpec:
        """The spec with adapters de-duplicated and sorted.

        Raises:
            InvalidRequestError: a field is invalid; `param` names it.
        """
        if not DEPARTMENT_RE.match(self.department):
            raise InvalidRequestError(
                f"department {self.department!r} is not allowed: use 1-64 letters, digits, "
                "'_', '-' or '.'",
                param="department",
            )
        for name in self.adapters:
            try:
                check_adapter_name(name)
            except ValueError as exc:
                raise InvalidRequestError(str(exc), param="adapters") from exc
        for field, value in (("rpm", self.rpm), ("tpm", self.tpm)):
            if value is not None and value < 1:
                raise InvalidRequestError(f"`{field}` must be at least 1", param=field)
        if not 1 / MAX_WEIGHT <= self.weight <= MAX_WEIGHT:
            raise InvalidRequestError(
                f"`weight` must be between {1 / MAX_WEIGHT:g} and {MAX_WEIGHT:g} (1: an equal "
                "share)",
                param="weight",
            )
        if len(self.label) > MAX_LABEL_CHARS:
            raise InvalidRequestError(
                f"`label` is longer than {MAX_LABEL_CHARS} characters", param="label"
            )
        return KeySpec(
            self.department,
            tuple(sorted(set(self.adapters))),
            self.base,
            self.rag,
            self.rpm,
            self.tpm,
            self.label,
            float(self.weight),
        )


@dataclass(frozen=True)
class ApiKey:
    """A stored key: never the key itself, only its sha256 and its first characters."""

    id: str
    prefix: str
    """The key's first characters, so people can tell their keys apart."""
    department: str
    label: str
    adapters: tuple[str, ...]
    base: bool
    rag: bool
    rpm: int | None
    tpm: int | None
    created_at: float
    created_by: str
    revoked_at: float | None = None
    revoked_by: str | None = None
    weight: float = 1.0
    """Share of generation slots under load (`KeySpec.weight`)."""

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def access(self) -> Access:
        return Access(frozenset(self.adapters), self.base, self.rag)

    def public(self) -> dict[str, Any]:
        """The record as shown by `GET /v1/keys` and `loramux keys list`."""
        return {
            "object": "api_key",
            "id": self.id,
            "prefix": self.prefix,
            "department": self.department,
            "label": self.label,
            "adapters": list(self.adapters),
            "base": self.base,
            "rag": self.rag,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "weight": self.weight,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "revoked": self.revoked,
            "revoked_at": self.revoked_at,
            "revoked_by": self.revoked_by,
        }


def split_names(values: Iterable[str]) -> tuple[str, ...]:
    """Adapter names from `--adapters hr,it` (commas and repeats both work)."""
    return tuple(n.strip() for v in values for n in v.split(",") if n.strip())

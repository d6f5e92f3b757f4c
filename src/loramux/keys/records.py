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
    expires_at: float | None = None
    """Unix time after which the key is refused (401 saying it expired); None: never."""
    weight: float = 1.0
    """The key's share of generation slots under load (`limits.fair_share`): its department is
    served `weight` times the tokens of a weight-1 department before waiting behind it."""

    def check(self, now: float | None = None) -> KeySpec:
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
        if self.expires_at is not None and now is not None and self.expires_at <= now:
            raise InvalidRequestError(
                "`expires_at` is in the past; give a future time (e.g. `--expires-in 30d`)",
                param="expires_at",
            )
        return KeySpec(
            self.department,
            tuple(sorted(set(self.adapters))),
            self.base,
            self.rag,
            self.rpm,
            self.tpm,
            self.label,
            self.expires_at,
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
    expires_at: float | None = None
    """Unix time after which the key is refused; None: never."""
    rotated_at: float | None = None
    """When its secret was last replaced (`rotate`); the id and access stay."""
    weight: float = 1.0
    """Share of generation slots under load (`KeySpec.weight`)."""

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

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
            "expires_at": self.expires_at,
            "rotated_at": self.rotated_at,
        }


def unknown_adapter_warnings(adapters: Iterable[str], registered: Iterable[str]) -> list[str]:
    """Warnings for a key's adapters that the registry does not hold (yet): the key is made,
    but those names work only once such adapters are registered."""
    known = set(registered)
    missing = sorted(set(adapters) - known)
    if not missing:
        return []
    names = ", ".join(repr(n) for n in missing)
    listed = ", ".join(sorted(known)) or "none yet"
    return [
        f"adapter(s) {names} are not registered (registered: {listed}); the key may use them "
        "once they are, so check the spelling"
    ]


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_expiry(value: str, now: float) -> float:
    """An expiry as Unix time, from a duration (`30d`, `12h`, `90m`, `2w`) or an ISO date or
    time (`2027-01-31`, `2027-01-31T18:00:00+01:00`; no zone means UTC).

    Raises:
        InvalidRequestError: neither a duration nor an ISO date (`param` is `expires_in`).
    """
    from datetime import UTC, datetime

    text = value.strip()
    unit = DURATION_UNITS.get(text[-1:].lower())
    if unit is not None and text[:-1].isdigit() and int(text[:-1]) > 0:
        return now + int(text[:-1]) * unit
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequestError(
            f"expiry {value!r} is neither a duration (30d, 12h, 90m, 2w) nor an ISO date "
            "(2027-01-31 or 2027-01-31T18:00:00+01:00)",
            param="expires_in",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def split_names(values: Iterable[str]) -> tuple[str, ...]:
    """Adapter names from `--adapters hr,it` (commas and repeats both work)."""
    return tuple(n.strip() for v in values for n in v.split(",") if n.strip())

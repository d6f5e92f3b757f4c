"""Issuing, listing, rotating, revoking and looking up API keys.

A key is `lmx-` followed by 43 URL-safe characters (256 random bits from `secrets`). It is shown
once, when it is made; the store keeps its sha256 and its first 12 characters (so people can
tell their keys apart). A presented key is looked up by its sha256: the digest of a guess says
nothing about how close the guess was, so the lookup needs no constant-time comparison.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loramux.config import RegistrySettings
from loramux.keys.records import ApiKey, KeySpec
from loramux.keys.store import KEY_STORES, KeyStore

logger = logging.getLogger(__name__)

KEY_PREFIX = "lmx-"
"""Every API key starts with this, so a leaked one is easy to recognise (and to scan for)."""
SHOWN_CHARS = 12
"""Characters of a key kept in the clear (`lmx-` and 8 more)."""


def new_secret() -> str:
    """A fresh key: `lmx-` and 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(secret: str) -> str:
    """The sha256 hex digest stored for a key."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    """A new key: the secret (shown once) and its stored record."""

    secret: str
    record: ApiKey


class Keyring:
    """The API keys of one registry database."""

    def __init__(self, store: KeyStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    @classmethod
    def open(cls, data_dir: Path, settings: RegistrySettings | None = None) -> Keyring:
        """The keyring of a data dir (`<data_dir>/registry.sqlite3` for `registry.store:
        sqlite`) or of `registry.database_url` (`postgres`)."""
        settings = settings or RegistrySettings()
        return cls(KEY_STORES[settings.store](data_dir, settings))

    def create(self, spec: KeySpec, *, actor: str) -> IssuedKey:
        """Make a key for `spec`.

        Args:
            spec: what the key may use and its limits.
            actor: who asks (an admin key's label, or `cli`), for the audit log.

        Raises:
            InvalidRequestError: the spec is invalid (`param` names the field).
        """
        spec = spec.check(now=self.clock())
        secret = new_secret()
        record = ApiKey(
            id=secrets.token_hex(6),
            prefix=secret[:SHOWN_CHARS],
            department=spec.department,
            label=spec.label,
            adapters=spec.adapters,
            base=spec.base,
            rag=spec.rag,
            rpm=spec.rpm,
            tpm=spec.tpm,
            created_at=self.clock(),
            created_by=actor,
            expires_at=spec.expires_at,
            weight=spec.weight,
        )
        self.store.insert(record, key_digest(secret))
        logger.info(
            "API key %s (%s) created by %s for department %s: adapters %s, base %s, rag %s",
            record.id,
            record.prefix,
            actor,
            record.department,
            ",".join(record.adapters) or "-",
            record.base,
            record.rag,
        )
        return IssuedKey(secret, record)

    def list_keys(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        return self.store.list_keys()

    def revoke(self, key_id: str, *, actor: str) -> ApiKey:
        """Revoke a key; it stops working on the next request, in every process.

        Raises:
            KeyNotFoundError: no key has this id.
        """
        record = self.store.revoke(key_id, at=self.clock(), actor=actor)
        logger.info("API key %s (%s) revoked by %s", record.id, record.prefix, actor)
        return record

    def rotate(self, key_id: str, *, actor: str) -> IssuedKey:
        """Give a key a new secret (shown once); its id, department, access, limits and expiry
        stay, and the old secret is refused from the next request on, in every process.

        Raises:
            KeyNotFoundError: no key has this id.
            InvalidRequestError: the key is revoked.
        """
        secret = new_secret()
        record = self.store.rotate(
            key_id,
            prefix=secret[:SHOWN_CHARS],
            digest=key_digest(secret),
            at=self.clock(),
            actor=actor,
        )
        logger.info("API key %s rotated by %s (now %s)", record.id, actor, record.prefix)
        return IssuedKey(secret, record)

    def lookup(self, secret: str) -> ApiKey | None:
        """The key record a presented secret belongs to (revoked or not), or None."""
        if not secret.startswith(KEY_PREFIX):
            return None
        return self.store.find(key_digest(secret))

    def has_keys(self) -> bool:
        """True when at least one key is not revoked."""
        return self.store.count_active() > 0

    def close(self) -> None:
        self.store.close()

"""Admin keys: stored hashed (sha256 hex) with a label, checked in constant time.

The label names who made each change in the registry's audit log. A request proves it holds a key
with `Authorization: Bearer <key>`; the presented key is hashed and compared with every stored hash
in constant time. Missing or wrong keys raise `AuthenticationError` (HTTP 401). With no admin key
configured every check fails: the registry is never open by default. No HTTP here: the FastAPI
dependencies that use this live in `loramux.api.auth`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from loramux.errors import AuthenticationError

ENV_ADMIN_KEY = "LORAMUX_ADMIN_KEY"
"""Environment variable holding a plain admin key (label `admin`); `load_config` hashes it."""


def hash_key(key: str) -> str:
    """The sha256 hex digest stored for an admin key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class AdminKeys:
    """Checks bearer tokens against hashed admin keys."""

    def __init__(self, hashed: Mapping[str, str]) -> None:
        """Hold the hashed keys.

        Args:
            hashed: label -> sha256 hex digest of the key.
        """
        self._keys = [(label, bytes.fromhex(digest)) for label, digest in hashed.items()]

    @property
    def configured(self) -> bool:
        return bool(self._keys)

    def check(self, authorization: str | None) -> str:
        """The label of the key an `Authorization` header carries.

        Raises:
            AuthenticationError: no admin key configured, no bearer token, or a wrong one.
        """
        if not self._keys:
            raise AuthenticationError(
                "no admin key is configured on this server; set admin.keys in the config "
                f"(sha256 digests) or {ENV_ADMIN_KEY}, then restart",
                code="admin_key_not_configured",
            )
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError(
                "this endpoint needs the admin key: send `Authorization: Bearer <admin key>`"
            )
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        found: str | None = None
        for label, stored in self._keys:  # no early exit: every key is compared
            if hmac.compare_digest(digest, stored) and found is None:
                found = label
        if found is None:
            raise AuthenticationError("the admin key is not valid; check the key and try again")
        return found

"""Who is calling an inference endpoint, what they may use, and their rate limits.

Every inference request gets a `Caller` from a bearer token: a department's API key (from the
registry database, looked up on every request, so a revocation takes effect at once) or an
admin key (access to everything, no limits). Missing, unknown, revoked and expired keys are
refused with 401. With `auth.enabled: false` (a local demo; the server warns at start-up) every
request is the anonymous caller with access to everything and no limits.

`Gate.count_request` takes one request from the key's requests-per-minute allowance (the HTTP
side, `loramux.api.access`, calls it for every metered endpoint); tokens per minute are charged
by the chat service, which knows the prompt and `max_tokens`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from loramux.config import AuthSettings, LoramuxConfig
from loramux.errors import AuthenticationError
from loramux.keys.admin import AdminKeys
from loramux.keys.keyring import KEY_PREFIX, Keyring
from loramux.keys.ratelimit import Limits, RateLimiter, TokenCharge
from loramux.keys.records import EVERYTHING, Access

logger = logging.getLogger(__name__)

CREATE_HINT = (
    "an admin creates one with `loramux keys create --department <name> --adapters <a,b>` "
    "(or POST /v1/keys)"
)


@dataclass(frozen=True)
class Caller:
    """Who sends a request."""

    id: str
    """The key's id, `admin:<label>` for an admin key, or `anonymous` while auth is off."""
    department: str | None
    access: Access
    limits: Limits
    user: str | None
    """Who asks, for the sticky A/B assignment when the request has no `user` field."""
    privileged: bool = False
    """An admin key, or every request while auth is off: sees every adapter and its audit
    log, and may rate any request. A department key sees only what its `access` lists."""
    weight: float = 1.0
    """The key's share of generation slots under load (`limits.fair_share`)."""

    def visible(self, adapter: str) -> bool:
        """True when the caller may see adapter `adapter` in registry reads and listings."""
        return self.privileged or self.access.may_use_adapter(adapter)

    @property
    def tenant(self) -> str:
        """Whom fair share counts this caller's tokens for: its department, else its key."""
        return self.department or self.id


ANONYMOUS = Caller("anonymous", None, EVERYTHING, Limits(), None, privileged=True)


class Gate:
    """Authenticates callers and applies their rate limits."""

    def __init__(
        self,
        settings: AuthSettings,
        admin: AdminKeys,
        keyring: Keyring | None = None,
        limiter: RateLimiter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Args:
        settings: `auth:` of the config (on or off, default limits).
        admin: the admin keys; they work on inference endpoints too.
        keyring: the API keys; None accepts admin keys only.
        limiter: the per-key buckets; None applies no limits.
        """
        self.settings = settings
        self.admin = admin
        self.keyring = keyring
        self.limiter = limiter
        self.clock = clock
        """Wall clock for key expiry (tests pass a fake)."""

    def authenticate(self, authorization: str | None) -> Caller:
        """The caller an `Authorization` header names.

        Raises:
            AuthenticationError: no bearer token, an unknown key, or a revoked one (HTTP 401).
        """
        if not self.settings.enabled:
            return ANONYMOUS
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError(
                f"this endpoint needs an API key: send `Authorization: Bearer <key>`; "
                f"{self._no_keys_hint()}"
            )
        record = self.keyring.lookup(token) if self.keyring is not None else None
        if record is not None:
            if record.revoked:
                raise AuthenticationError(
                    f"the API key {record.prefix}... was revoked; ask an admin for a new one"
                )
            if record.expired(self.clock()):
                when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(record.expires_at or 0))
                raise AuthenticationError(
                    f"the API key {record.prefix}... expired at {when}; ask an admin to rotate it "
                    f"(`loramux keys rotate {record.id}`) or for a new one",
                    code="api_key_expired",
                )
            return Caller(
                record.id,
                record.department,
                record.access,
                Limits(
                    self.settings.rpm if record.rpm is None else record.rpm,
                    self.settings.tpm if record.tpm is None else record.tpm,
                ),
                record.id,
                weight=record.weight,
            )
        if self.admin.configured:
            try:
                label = self.admin.check(authorization)
            except AuthenticationError:
                pass
            else:
                return Caller(
                    f"admin:{label}", None, EVERYTHING, Limits(), f"admin:{label}", privileged=True
                )
        raise AuthenticationError(
            "the API key is not valid; check it (keys start with "
            f"`{KEY_PREFIX}`), or ask an admin for one"
        )

    def _no_keys_hint(self) -> str:
        if self.keyring is not None and not self.keyring.has_keys():
            return (
                f"this server has no API key yet: {CREATE_HINT}, or turn auth off for a local "
                "demo (`auth: {enabled: false}` in the config, or LORAMUX_AUTH=off)"
            )
        return CREATE_HINT

    def count_request(self, caller: Caller) -> None:
        """Take one request from the caller's allowance.

        Raises:
            RateLimitError: the caller is over its requests per minute (HTTP 429).
        """
        if self.limiter is not None and not caller.limits.unlimited:
            self.limiter.count_request(caller.id, caller.limits)

    def charge_tokens(self, caller: Caller, estimate: int) -> TokenCharge | None:
        """Take an estimate of a request's tokens; None when the caller has no token limit.

        Raises:
            RateLimitError: the caller is over its tokens per minute (HTTP 429).
        """
        if self.limiter is None or caller.limits.tpm is None:
            return None
        return self.limiter.charge_tokens(caller.id, caller.limits, estimate)


def open_gate(config: LoramuxConfig) -> Gate:
    """The gate of a serving config: its admin keys, the API keys of its data dir, fresh rate
    limit buckets. Logs a warning when auth is off."""
    if not config.auth.enabled:
        logger.warning(
            "auth is OFF (auth.enabled: false or LORAMUX_AUTH=off): anyone who reaches "
            "%s:%d may use every model without an API key. Fine for a local demo; never expose "
            "this server",
            config.server.host,
            config.server.port,
        )
    keyring = Keyring.open(config.paths.data_dir, config.registry)
    return Gate(config.auth, AdminKeys(config.admin.keys), keyring, RateLimiter())

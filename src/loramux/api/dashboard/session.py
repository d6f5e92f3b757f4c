"""Dashboard logins: signed, expiring session tokens, and the CSRF tokens of its forms.

Logging in with an admin key gives a session token, `<payload>.<signature>`: the payload is
base64url JSON `{label, exp, sid}` (the admin key's label, an expiry time and a random session
id) and the signature an HMAC-SHA256 of it under a key drawn at start-up. The token goes into an
HttpOnly, SameSite=Strict cookie; the admin key itself is never stored or sent back. Every form
that changes something carries a CSRF token, the HMAC of the session id, checked on POST.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

SESSION_COOKIE = "loramux_session"
LOGIN_COOKIE = "loramux_login"
"""Holds the login form's nonce (double submit), so a login cannot be posted cross-site."""
COOKIE_PATH = "/ui"


@dataclass(frozen=True)
class Session:
    label: str
    """The label of the admin key that logged in: recorded as the actor of every change."""
    expires: float
    sid: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Issues and checks session and CSRF tokens under one secret key."""

    def __init__(
        self,
        ttl_s: float,
        *,
        key: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Args:
        ttl_s: how long a session lasts.
        key: the signing key; default: 32 random bytes (sessions end with the process).
        clock: wall clock (tests pass their own).
        """
        self.ttl_s = ttl_s
        self._key = key or secrets.token_bytes(32)
        self._clock = clock

    def _sign(self, purpose: str, data: str) -> str:
        mac = hmac.new(self._key, f"{purpose}\x00{data}".encode(), hashlib.sha256)
        return _b64(mac.digest())

    def issue(self, label: str) -> str:
        """A new session token for the admin key labelled `label`."""
        payload = {"label": label, "exp": self._clock() + self.ttl_s, "sid": secrets.token_hex(16)}
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{self._sign('session', body)}"

    def verify(self, token: str | None) -> Session | None:
        """The session a token stands for; None when it is missing, forged or expired."""
        if not token or token.count(".") != 1:
            return None
        body, signature = token.split(".")
        if not hmac.compare_digest(signature, self._sign("session", body)):
            return None
        try:
            payload = json.loads(_unb64(body))
            session = Session(str(payload["label"]), float(payload["exp"]), str(payload["sid"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires > self._clock() else None

    def csrf(self, session: Session) -> str:
        """The CSRF token the session's forms carry."""
        return self._sign("csrf", session.sid)

    def check_csrf(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.csrf(session))

    @staticmethod
    def login_nonce() -> str:
        """A fresh nonce for the login form and its cookie."""
        return secrets.token_urlsafe(24)

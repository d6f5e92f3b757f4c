"""The dashboard tests build their apps with the observability tests' factory: the real
registry with two random-weight adapters, the fake engine, auth on, the admin key known."""

from __future__ import annotations

from tests.observability.conftest import ADMIN, ADMIN_KEY, AppFactory, make_app

__all__ = ["ADMIN", "ADMIN_KEY", "AppFactory", "make_app"]

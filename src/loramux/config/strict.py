"""The base class of every config model: unknown keys are refused, values are frozen.

Also the rule for adapter names, which several sections (adapters, routes, training) check.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

ADAPTER_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
RESERVED_MODEL_NAMES = frozenset({"auto", "base", "rag"})


class Strict(BaseModel):
    """A config section: a typo in a key is an error that names the key, never ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def check_adapter_name(name: str) -> str:
    """Check that `name` can be used as an adapter name (and so as a `model` in requests).

    Raises:
        ValueError: with a message that says which names are allowed.
    """
    if name in RESERVED_MODEL_NAMES:
        raise ValueError(f"adapter name {name!r} is reserved; pick another name")
    if not ADAPTER_NAME_RE.match(name):
        raise ValueError(
            f"adapter name {name!r} is not allowed: use 1-64 lower-case letters, digits, '_', '-' "
            "or '.', starting with a letter or digit"
        )
    return name

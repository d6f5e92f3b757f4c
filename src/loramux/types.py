"""Engine-neutral domain types that every layer shares: a chat message and an adapter reference.

They sit at the bottom of the package, beside `config` and `errors`, and import nothing of
loramux: the adapters, the engines (`serve`) and the gateway all speak them, so none of those
has to import another for them. Request and result types of the engines stay in `serve.types`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class AdapterRef:
    """An adapter version as an engine sees it: a unique key and a PEFT folder."""

    key: str
    """Unique per distinct weights (`hr@3f9c1a2b4d5e`); never reused for other weights."""
    path: Path

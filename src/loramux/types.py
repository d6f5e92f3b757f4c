"""Engine-neutral domain types that every layer shares: a chat message and an adapter reference.

They sit at the bottom of the package, beside `config` and `errors`, and import nothing of
loramux: the adapters, the engines (`serve`) and the gateway all speak them, so none of those
has to import another for them. Request and result types of the engines stay in `serve.types`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolCall:
    """A function call the model made (OpenAI `tool_calls[]` of an assistant message)."""

    id: str
    name: str
    arguments: str
    """The arguments as JSON text, as the model wrote them."""


@dataclass(frozen=True)
class ChatMessage:
    """One turn. Engines only ever see `system`, `user` and `assistant` turns without tool
    fields: the gateway renders tool calls and `tool` results into text first
    (`loramux.gateway.tools.render`)."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    """An assistant turn's function calls."""
    tool_call_id: str | None = None
    """A `tool` turn: the id of the call whose result this is."""


@dataclass(frozen=True)
class AdapterRef:
    """An adapter version as an engine sees it: a unique key and a PEFT folder."""

    key: str
    """Unique per distinct weights (`hr@3f9c1a2b4d5e`); never reused for other weights."""
    path: Path

"""What the gateway takes from a parsed request: engine-neutral inputs, no wire models.

The HTTP layer (`api/protocol.py`) converts an OpenAI body into a `ChatInput` or a
`CompletionInput` at the edge; everything from here on (limits, dispatch, the engine) reads these.
"""

from __future__ import annotations

from dataclasses import dataclass

from loramux.types import ChatMessage


@dataclass(frozen=True)
class SamplingInput:
    """The sampling fields as the client sent them (None: the server's default)."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class ChatInput:
    """A chat request: who asks for which model, the conversation, how to sample."""

    model: str
    """`auto`, the base model id, an adapter name or `name@version`."""
    messages: tuple[ChatMessage, ...]
    sampling: SamplingInput = SamplingInput()
    user: str | None = None
    """The request's `user` field (sticky A/B assignment), if any."""


@dataclass(frozen=True)
class CompletionInput:
    """A raw completions request (one prompt)."""

    model: str
    prompt: str
    sampling: SamplingInput = SamplingInput()
    user: str | None = None

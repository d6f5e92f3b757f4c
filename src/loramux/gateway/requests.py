"""What the gateway takes from a parsed request: engine-neutral inputs, no wire models.

The HTTP layer (`api/protocol.py`) converts an OpenAI body into a `ChatInput` or a
`CompletionInput` at the edge; everything from here on (limits, dispatch, the engine) reads these.
"""

from __future__ import annotations

from dataclasses import dataclass

from loramux.gateway.tools import ToolsInput
from loramux.serve.types import StructuredOutput
from loramux.types import ChatMessage


@dataclass(frozen=True)
class SamplingInput:
    """The sampling fields as the client sent them (None: the server's default)."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1
    """Choices to generate (each its own sampling; seed `s` gives choice i the seed s + i)."""
    logprobs: int | None = None
    """None: none; k >= 0: each token's logprob and k alternatives."""


@dataclass(frozen=True)
class ChatInput:
    """A chat request: who asks for which model, the conversation, how to sample."""

    model: str
    """`auto`, the base model id, an adapter name or `name@version`."""
    messages: tuple[ChatMessage, ...]
    sampling: SamplingInput = SamplingInput()
    user: str | None = None
    """The request's `user` field (sticky A/B assignment), if any."""
    tools: ToolsInput | None = None
    """`tools`, `tool_choice`, `parallel_tool_calls`; None: the request sent no tools."""
    response_format: StructuredOutput | None = None
    """`json_object` / `json_schema`; None: free text."""
    format_instruction: str | None = None
    """A `json_schema`'s name and description, told to the model in the system message."""


@dataclass(frozen=True)
class CompletionInput:
    """A raw completions request (one prompt; the HTTP edge splits a list of prompts)."""

    model: str
    prompt: str
    sampling: SamplingInput = SamplingInput()
    user: str | None = None
    echo: bool = False
    """Put the prompt in front of the completion text."""

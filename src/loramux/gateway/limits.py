"""Size limits on what a request asks the gateway to read: message count and message length.

Body size is limited earlier (`api.middleware`, HTTP 413) and `max_tokens` / context length by
the service and the engine; these checks sit between the two, so that a request within the body
limit still cannot make the router or the tokenizer chew on a million tiny messages.
"""

from __future__ import annotations

from collections.abc import Sequence

from loramux.config import LimitsSettings
from loramux.errors import InvalidRequestError
from loramux.types import ChatMessage


def check_messages(messages: Sequence[ChatMessage], limits: LimitsSettings) -> None:
    """Refuse conversations with too many or too long messages, or with no user text.

    Raises:
        InvalidRequestError: naming the limit and the message (`param`: `messages` or
            `messages.<i>.content`), or no user message with text.
    """
    if len(messages) > limits.max_messages:
        raise InvalidRequestError(
            f"the request has {len(messages)} messages, over this server's limit of "
            f"{limits.max_messages}; send fewer (drop or summarise older turns)",
            param="messages",
        )
    for i, message in enumerate(messages):
        if len(message.content) > limits.max_message_chars:
            raise InvalidRequestError(
                f"message {i} has {len(message.content)} characters, over this server's limit "
                f"of {limits.max_message_chars}; shorten it",
                param=f"messages.{i}.content",
            )
    if not any(m.role == "user" and m.content.strip() for m in messages):
        raise InvalidRequestError(
            "messages must contain at least one user message with text", param="messages"
        )


def check_prompt(prompt: str, limits: LimitsSettings) -> None:
    """Refuse a completions prompt longer than a message may be.

    Raises:
        InvalidRequestError: with `param: prompt`.
    """
    if len(prompt) > limits.max_message_chars:
        raise InvalidRequestError(
            f"the prompt has {len(prompt)} characters, over this server's limit of "
            f"{limits.max_message_chars}; shorten it",
            param="prompt",
        )

"""RAG prompts: retrieved passages into the chat as a numbered, citable system message.

`build_rag_messages` puts the passages in a system message ([1], [2], ...) with an instruction to
answer from them and cite them, ahead of the conversation (merged with the client's own system
message, if any: many chat templates accept only one). It also returns the list of sources, which
the API sends back to the client with the answer. `retrieval_query` picks the text to search with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loramux.rag.knowledge_base import Passage

INSTRUCTION = (
    "Answer the user's question using the numbered passages below. Cite the passages you use "
    "with their numbers in square brackets, for example [1] or [2][3]. If the passages do not "
    "contain the answer, say so briefly instead of guessing."
)


@dataclass(frozen=True)
class Source:
    """A cited passage, as returned to the client."""

    index: int
    source: str
    heading: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "index": self.index,
            "source": self.source,
            "heading": self.heading,
            "score": round(self.score, 4),
        }


@dataclass(frozen=True)
class RagPrompt:
    """Chat messages with the passages added, and the sources they cite."""

    messages: list[dict[str, str]]
    sources: list[Source]


def format_passages(passages: Sequence[Passage]) -> str:
    """The passages as numbered blocks: `[n] source > heading` then the text."""
    blocks = []
    for n, passage in enumerate(passages, start=1):
        where = f"{passage.source} > {passage.heading}" if passage.heading else passage.source
        blocks.append(f"[{n}] {where}\n{passage.text}")
    return "\n\n".join(blocks)


def build_rag_messages(
    messages: Sequence[Mapping[str, str]],
    passages: Sequence[Passage],
    *,
    instruction: str = INSTRUCTION,
) -> RagPrompt:
    """The conversation with a system message holding the numbered passages.

    Args:
        messages: the chat (`{"role", "content"}` mappings), oldest first.
        passages: retrieved passages, best first.
        instruction: what the model is told to do with them.

    Returns:
        The new messages (the client's system message, if first, is kept after ours in the same
        system message) and the sources, numbered as in the prompt.
    """
    system = f"{instruction}\n\n{format_passages(passages)}" if passages else instruction
    rest = [{"role": m["role"], "content": m["content"]} for m in messages]
    if rest and rest[0]["role"] == "system":
        system = f"{rest.pop(0)['content']}\n\n{system}"
    sources = [Source(n, p.source, p.heading, p.score) for n, p in enumerate(passages, start=1)]
    return RagPrompt([{"role": "system", "content": system}, *rest], sources)


def retrieval_query(messages: Sequence[Mapping[str, str]], turns: int = 2) -> str:
    """The text to search the knowledge base with: the last `turns` user turns, joined.

    A follow-up ("And for part-timers?") says little alone; the turn before gives the topic.
    """
    users = [m["content"] for m in messages if m.get("role") == "user" and m.get("content")]
    return " ".join(users[-turns:])

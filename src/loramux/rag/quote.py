"""The sentence of the retrieved passages that answers the question, quoted verbatim.

A 135M model reads the right passage and still misquotes it ("07:00 to 14:00" where the
handbook says 07:30 to 14:30). So a RAG answer ends with the one sentence (a list item, a table
row) of the passages most likely to hold the answer, copied as it is, with its citation: the
numbers and names the reader acts on come from the handbook, never from the model's memory.

The sentence is picked by the embedder's cosine similarity to the question plus the share of the
question's content words it contains (`LEXICAL_WEIGHT`, chosen on demo/data/rag/test.jsonl with
`loramux eval rag`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from loramux.embed.encoder import Encoder
from loramux.rag.knowledge_base import Passage

LEXICAL_WEIGHT = 0.5
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"(])")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'-]*")
_STOP = frozenset(
    """a an the is are was were be been do does did of in on at to for from by with and or
    what when where which who whom how many much long often can could may might i we you my
    our your it its this that there their they me us up about after before than then""".split()
)


@dataclass(frozen=True)
class Quote:
    index: int
    """The passage's number in the prompt ([1], [2], ...)."""
    text: str
    passage: Passage
    score: float

    def render(self) -> str:
        """How the quote ends an answer: the sentence in quotes, then where it is from."""
        where = self.passage.source + (f" > {self.passage.heading}" if self.passage.heading else "")
        return f'[{self.index}] {where}: "{self.text}"'


def units(text: str) -> list[str]:
    """A passage's sentences, list items and table rows, whitespace folded."""
    out: list[str] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            joined = " ".join(paragraph)
            out.extend(s.strip() for s in _SENTENCE_END.split(joined) if s.strip())
            paragraph.clear()

    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            flush()
            continue
        if line.startswith("|"):
            flush()
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                out.append(" | ".join(c for c in cells if c))
            continue
        if re.match(r"^([-*]|\d+\.)\s", line):
            flush()
            line = re.sub(r"^([-*]|\d+\.)\s+", "", line)
        paragraph.append(line.replace("**", ""))
    flush()
    return [u for u in out if len(u) > 3]


def content_words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text) if w.lower() not in _STOP and len(w) > 1}


def best_quote(question: str, passages: Sequence[Passage], encoder: Encoder) -> Quote | None:
    """The unit of `passages` that best answers `question`; None when there are none."""
    candidates = [(n, p, u) for n, p in enumerate(passages, start=1) for u in units(p.text)]
    if not candidates:
        return None
    vectors = encoder.encode([question, *(u for _, _, u in candidates)])
    similarity = vectors[1:] @ vectors[0]
    asked = content_words(question)
    overlap = np.array(
        [len(asked & content_words(u)) / len(asked) if asked else 0.0 for _, _, u in candidates]
    )
    scores = similarity + LEXICAL_WEIGHT * overlap
    best = int(np.argmax(scores))
    n, passage, text = candidates[best]
    return Quote(n, text, passage, float(scores[best]))

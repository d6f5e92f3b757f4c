"""Chunking: a document's blocks into passages of at most `max_words` words.

A chunk never spans two sections: it gathers consecutive paragraphs under one heading path until
the next paragraph would make it too long. A paragraph longer than `max_words` is split between
sentences. Each chunk keeps its heading path and character offsets in the document text, and is
embedded as "heading: text" so that a passage is found by its section's topic too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from loramux.rag.readers import Block

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Chunk:
    """One passage of a document.

    Attributes:
        text: the passage text (as in the document).
        heading: heading path of its section.
        start: character offset in the document text.
        end: offset after its last character.
        position: index of the chunk within its document.
    """

    text: str
    heading: str
    start: int
    end: int
    position: int

    @property
    def embed_text(self) -> str:
        """What is embedded: the heading path, then the text."""
        return f"{self.heading}: {self.text}" if self.heading else self.text


def chunk_blocks(blocks: Sequence[Block], max_words: int = 150) -> list[Chunk]:
    """Group blocks into chunks; see the module docstring.

    Args:
        blocks: the document's blocks, in order.
        max_words: most words per chunk.

    Returns:
        The chunks, in document order.
    """
    pieces = [piece for block in blocks for piece in _split_long(block, max_words)]
    chunks: list[Chunk] = []
    group: list[Block] = []
    words = 0
    for piece in pieces:
        n = len(piece.text.split())
        if group and (piece.heading != group[0].heading or words + n > max_words):
            chunks.append(_join(group, len(chunks)))
            group, words = [], 0
        group.append(piece)
        words += n
    if group:
        chunks.append(_join(group, len(chunks)))
    return chunks


def _join(group: Sequence[Block], position: int) -> Chunk:
    text = "\n\n".join(block.text for block in group)
    return Chunk(text, group[0].heading, group[0].start, group[-1].end, position)


def _split_long(block: Block, max_words: int) -> list[Block]:
    """The block, or its sentence groups when it has more than `max_words` words."""
    if len(block.text.split()) <= max_words:
        return [block]
    out: list[Block] = []
    cursor = 0
    sentences: list[tuple[int, int]] = []
    for match in _SENTENCE_END.finditer(block.text):
        sentences.append((cursor, match.start()))
        cursor = match.end()
    sentences.append((cursor, len(block.text)))
    start, words = sentences[0][0], 0
    end = start
    for a, b in sentences:
        n = len(block.text[a:b].split())
        if words and words + n > max_words:
            out.append(_piece(block, start, end))
            start, words = a, 0
        words += n
        end = b
        while words > max_words:  # one very long "sentence": cut it by words
            cut = _word_offset(block.text, start, max_words)
            out.append(_piece(block, start, cut))
            start = cut
            words = len(block.text[start:end].split())
    out.append(_piece(block, start, end))
    return [piece for piece in out if piece.text]


def _word_offset(text: str, start: int, count: int) -> int:
    matches = list(re.finditer(r"\S+", text[start:]))
    if len(matches) <= count:
        return len(text)
    return start + matches[count].start()


def _piece(block: Block, a: int, b: int) -> Block:
    raw = block.text[a:b]
    lead = len(raw) - len(raw.lstrip())
    text = raw.strip()
    return Block(text, block.heading, block.start + a + lead, block.start + a + lead + len(text))

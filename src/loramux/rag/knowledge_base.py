"""Retrieval from the knowledge base: the passages closest to a query, with their sources.

`KnowledgeBase.load(kb_dir, encoder)` reads the live generation written by `ingest`;
`retrieve(query, k)` returns the best passages; `best_score(query)` is the probe the router calls
before answering an abstained request with RAG (`SemanticRouter(kb_probe=kb.best_score)`).
`reload()` picks up a newer generation after an ingest, without a restart.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loramux.embed.encoder import Encoder
from loramux.errors import KnowledgeBaseError
from loramux.rag.store import Generation, current_dir, load_generation


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk.

    Attributes:
        text: the passage.
        source: the document it comes from (as cited).
        heading: heading path of its section.
        score: cosine similarity to the query.
        start: character offset in the document text.
        end: offset after its last character.
    """

    text: str
    source: str
    heading: str
    score: float
    start: int = 0
    end: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "text": self.text,
            "source": self.source,
            "heading": self.heading,
            "score": round(self.score, 4),
            "start": self.start,
            "end": self.end,
        }


class KnowledgeBase:
    """Searchable chunks of ingested documents.

    Args:
        kb_dir: the knowledge base folder.
        encoder: text encoder (the one the documents were embedded with).
        generation: the loaded generation (None: empty knowledge base).
    """

    def __init__(self, kb_dir: Path, encoder: Encoder, generation: Generation | None) -> None:
        self.kb_dir = kb_dir
        self.encoder = encoder
        self._generation = generation
        self._loaded_from = current_dir(kb_dir)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, kb_dir: Path, encoder: Encoder) -> KnowledgeBase:
        """Open the knowledge base at `kb_dir` (empty when nothing was ingested).

        Raises:
            KnowledgeBaseError: it is damaged, or was built with another encoder.
        """
        generation = load_generation(kb_dir)
        _check_encoder(kb_dir, generation, encoder)
        return cls(kb_dir, encoder, generation)

    def reload(self) -> bool:
        """Load a newer generation if an ingest wrote one.

        Returns:
            Whether a newer generation was loaded.
        """
        folder = current_dir(self.kb_dir)
        if folder == self._loaded_from:
            return False
        generation = load_generation(self.kb_dir)
        _check_encoder(self.kb_dir, generation, self.encoder)
        with self._lock:
            self._generation, self._loaded_from = generation, folder
        return True

    def __len__(self) -> int:
        generation = self._generation
        return 0 if generation is None else len(generation.chunks)

    @property
    def sources(self) -> list[str]:
        """Citation names of the ingested documents."""
        generation = self._generation
        if generation is None:
            return []
        return sorted(str(entry["source"]) for entry in generation.manifest.files.values())

    def retrieve(self, query: str, k: int = 4) -> list[Passage]:
        """The `k` passages most similar to `query`, best first (fewer if the base is smaller)."""
        generation = self._generation
        if generation is None or not generation.chunks or k <= 0:
            return []
        scores, ids = generation.index.search(self.encoder.encode([query]), k)
        out = []
        for score, idx in zip(scores[0], ids[0], strict=True):
            chunk = generation.chunks.get(int(idx))
            if chunk is not None:
                out.append(
                    Passage(
                        chunk.text,
                        chunk.source,
                        chunk.heading,
                        float(score),
                        chunk.start,
                        chunk.end,
                    )
                )
        return out

    def best_score(self, query: str) -> float:
        """Similarity of the best passage (-1 for an empty knowledge base)."""
        passages = self.retrieve(query, 1)
        return passages[0].score if passages else -1.0


def _check_encoder(kb_dir: Path, generation: Generation | None, encoder: Encoder) -> None:
    if generation is not None and generation.manifest.encoder != encoder.name:
        raise KnowledgeBaseError(
            f"the knowledge base in {kb_dir} was built with encoder "
            f"{generation.manifest.encoder!r}, not {encoder.name!r}; ingest the documents again "
            "into a new folder"
        )

"""Ingesting documents into the knowledge base, incrementally.

`ingest` reads files and folders (Markdown, text, HTML, PDF with pypdf), chunks them, embeds the
chunks and writes a new generation of the knowledge base (see `store`). A file whose content hash
is unchanged keeps its chunks and vectors (nothing is re-read or re-encoded); a changed file's
chunks are replaced; files that no longer exist on disk are dropped, and with `prune=True` so are
files not named in this ingest.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loramux.embed.encoder import Encoder
from loramux.embed.index import FaissIndex
from loramux.errors import KnowledgeBaseError
from loramux.rag.chunking import Chunk, chunk_blocks
from loramux.rag.readers import READERS, read_document
from loramux.rag.store import Generation, Manifest, StoredChunk, load_generation, write_generation

Progress = Callable[[str, int, int], None]
"""Called as progress(file, done, total) after each file."""


@dataclass(frozen=True)
class IngestSummary:
    """What an ingest changed.

    Attributes:
        added: files new to the knowledge base.
        updated: files whose content changed (chunks replaced).
        unchanged: files skipped because their content hash is the same.
        removed: files dropped (deleted on disk, or pruned).
        chunks: chunks in the knowledge base after the ingest.
        encoded: chunks embedded in this ingest.
        seconds: wall time.
    """

    added: tuple[str, ...]
    updated: tuple[str, ...]
    unchanged: tuple[str, ...]
    removed: tuple[str, ...]
    chunks: int
    encoded: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "added": list(self.added),
            "updated": list(self.updated),
            "unchanged": list(self.unchanged),
            "removed": list(self.removed),
            "chunks": self.chunks,
            "encoded": self.encoded,
            "seconds": round(self.seconds, 2),
        }


def find_documents(paths: Iterable[Path]) -> list[tuple[Path, str]]:
    """Supported files under `paths`, each with its citation name.

    A file given directly is cited by its name; a file found in a folder by its path relative to
    that folder.

    Raises:
        KnowledgeBaseError: a path does not exist, or a file given directly is unsupported.
    """
    found: dict[Path, str] = {}
    for path in paths:
        path = path.expanduser()
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                if file.is_file() and file.suffix.lower() in READERS and not _hidden(file, path):
                    found.setdefault(file.resolve(), file.relative_to(path).as_posix())
        elif path.is_file():
            if path.suffix.lower() not in READERS:
                raise KnowledgeBaseError(
                    f"cannot ingest {path}: unsupported file type; use one of "
                    f"{', '.join(sorted(READERS))}"
                )
            found.setdefault(path.resolve(), path.name)
        else:
            raise KnowledgeBaseError(f"cannot ingest {path}: no such file or folder")
    return sorted(found.items(), key=lambda item: item[1])


def _hidden(file: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in file.relative_to(root).parts)


def ingest(
    paths: Sequence[Path],
    kb_dir: Path,
    encoder: Encoder,
    progress: Progress | None = None,
    *,
    chunk_words: int = 150,
    prune: bool = False,
) -> IngestSummary:
    """Add or update documents in the knowledge base at `kb_dir`.

    Args:
        paths: files and folders to ingest.
        kb_dir: the knowledge base folder (created if missing).
        encoder: text encoder (must be the one the knowledge base was built with).
        progress: called after each file with (file, done, total).
        chunk_words: most words per chunk.
        prune: also drop files that are in the knowledge base but not under `paths`.

    Returns:
        What changed.

    Raises:
        KnowledgeBaseError: a path is missing or unreadable, or the knowledge base was built
            with another encoder.
    """
    started = time.perf_counter()
    documents = find_documents(paths)
    old = load_generation(kb_dir)
    if old is not None and old.manifest.encoder != encoder.name:
        raise KnowledgeBaseError(
            f"the knowledge base in {kb_dir} was built with encoder {old.manifest.encoder!r}, "
            f"not {encoder.name!r}; ingest into a new folder"
        )
    manifest = Manifest(encoder.name, {}, old.manifest.next_id if old else 0)
    chunks: dict[int, StoredChunk] = {}
    keep_ids: list[int] = []
    new_chunks: list[StoredChunk] = []
    new_texts: list[str] = []
    added: list[str] = []
    updated: list[str] = []
    unchanged: list[str] = []
    for done, (path, source) in enumerate(documents, start=1):
        key = str(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        previous = old.manifest.files.get(key) if old else None
        if old is not None and previous is not None and previous["sha256"] == digest:
            ids = [int(i) for i in previous["chunks"]]
            chunks.update({i: old.chunks[i] for i in ids})
            keep_ids += ids
            manifest.files[key] = {**previous, "source": source}
            unchanged.append(source)
        else:
            text, blocks = read_document(path)
            del text
            ids = []
            for chunk in chunk_blocks(blocks, chunk_words):
                stored = _stored(chunk, manifest.next_id, key, source)
                manifest.next_id += 1
                new_chunks.append(stored)
                new_texts.append(chunk.embed_text)
                ids.append(stored.id)
            manifest.files[key] = {"sha256": digest, "source": source, "chunks": ids}
            (updated if previous is not None else added).append(source)
        if progress is not None:
            progress(source, done, len(documents))
    removed = _carry_over(old, manifest, chunks, keep_ids, {str(p) for p, _ in documents}, prune)
    index = FaissIndex(encoder.dim)
    if keep_ids and old is not None:
        index.add(*old.index.take(np.array(keep_ids, dtype=np.int64)))
    if new_chunks:
        vectors = encoder.encode(new_texts)
        index.add(vectors, np.array([c.id for c in new_chunks], dtype=np.int64))
        chunks.update({c.id: c for c in new_chunks})
    if old is None or added or updated or removed:
        write_generation(kb_dir, Generation(manifest, chunks, index))
    return IngestSummary(
        tuple(added),
        tuple(updated),
        tuple(unchanged),
        tuple(removed),
        len(chunks),
        len(new_chunks),
        time.perf_counter() - started,
    )


def _carry_over(
    old: Generation | None,
    manifest: Manifest,
    chunks: dict[int, StoredChunk],
    keep_ids: list[int],
    named: set[str],
    prune: bool,
) -> list[str]:
    """Keep files of the old generation not named in this ingest; return those dropped."""
    removed: list[str] = []
    if old is None:
        return removed
    for key, entry in old.manifest.files.items():
        if key in named:
            continue
        if prune or not Path(key).is_file():
            removed.append(str(entry.get("source", key)))
            continue
        ids = [int(i) for i in entry["chunks"]]
        chunks.update({i: old.chunks[i] for i in ids})
        keep_ids += ids
        manifest.files[key] = entry
    return removed


def _stored(chunk: Chunk, chunk_id: int, path: str, source: str) -> StoredChunk:
    return StoredChunk(
        id=chunk_id,
        path=path,
        source=source,
        heading=chunk.heading,
        position=chunk.position,
        start=chunk.start,
        end=chunk.end,
        text=chunk.text,
    )

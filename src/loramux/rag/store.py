"""The knowledge base on disk: generations of (faiss index, chunks, manifest), swapped atomically.

Layout under `kb_dir`:

    CURRENT                  name of the live generation (replaced with os.replace)
    gen-000007/index.faiss   faiss index of the chunk embeddings (ids = chunk ids)
    gen-000007/chunks.jsonl  one chunk per line (id, path, source, heading, offsets, text)
    gen-000007/manifest.json encoder name, and per file its sha256 and chunk ids

An ingest writes a complete new generation folder, then points `CURRENT` at it; a reader never
sees a half-written knowledge base. The previous generation is kept (a reader may be loading it);
older ones are deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loramux.embed.index import FaissIndex
from loramux.errors import KnowledgeBaseError

CURRENT = "CURRENT"
INDEX_FILE = "index.faiss"
CHUNKS_FILE = "chunks.jsonl"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as stored: where it comes from and its text.

    Attributes:
        id: chunk id (the faiss id).
        path: the file's absolute path (the manifest key).
        source: the name shown in citations (path relative to the ingested folder).
        heading: heading path of its section.
        position: index of the chunk within its file.
        start: character offset in the file's text.
        end: offset after its last character.
        text: the passage.
    """

    id: int
    path: str
    source: str
    heading: str
    position: int
    start: int
    end: int
    text: str


@dataclass
class Manifest:
    """What a generation holds, per file."""

    encoder: str
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    """path -> {"sha256", "source", "chunks": [ids]}."""
    next_id: int = 0


@dataclass(frozen=True)
class Generation:
    """One complete, loaded generation."""

    manifest: Manifest
    chunks: dict[int, StoredChunk]
    index: FaissIndex


def current_dir(kb_dir: Path) -> Path | None:
    """The live generation folder, or None when nothing was ingested yet."""
    pointer = kb_dir / CURRENT
    if not pointer.is_file():
        return None
    return kb_dir / pointer.read_text(encoding="utf-8").strip()


def load_generation(kb_dir: Path) -> Generation | None:
    """The live generation, or None when there is none.

    Raises:
        KnowledgeBaseError: files are missing or damaged.
    """
    folder = current_dir(kb_dir)
    if folder is None:
        return None
    try:
        raw = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        manifest = Manifest(raw["encoder"], raw["files"], int(raw["next_id"]))
        chunks = {}
        with (folder / CHUNKS_FILE).open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    chunk = StoredChunk(**json.loads(line))
                    chunks[chunk.id] = chunk
        index = FaissIndex.load(folder / INDEX_FILE)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KnowledgeBaseError(
            f"the knowledge base in {kb_dir} is damaged ({exc}); ingest the documents again"
        ) from exc
    return Generation(manifest, chunks, index)


def write_generation(kb_dir: Path, generation: Generation) -> Path:
    """Write a new generation folder and make it the live one; delete all but the previous one.

    Returns:
        The new generation's folder.
    """
    kb_dir.mkdir(parents=True, exist_ok=True)
    previous = current_dir(kb_dir)
    number = int(previous.name.split("-")[-1]) + 1 if previous is not None else 1
    tmp = Path(tempfile.mkdtemp(dir=kb_dir, prefix=".gen-"))
    try:
        generation.index.save(tmp / INDEX_FILE)
        lines = [json.dumps(asdict(c), ensure_ascii=False) for c in generation.chunks.values()]
        (tmp / CHUNKS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
        (tmp / MANIFEST_FILE).write_text(
            json.dumps(asdict(generation.manifest), indent=1), encoding="utf-8"
        )
        os.chmod(tmp, 0o755)
        final = kb_dir / f"gen-{number:06d}"
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fd, pointer = tempfile.mkstemp(dir=kb_dir, prefix=".CURRENT.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(final.name + "\n")
    os.chmod(pointer, 0o644)
    os.replace(pointer, kb_dir / CURRENT)
    keep = {final, previous}  # a reader may still be loading the previous one
    for old in kb_dir.glob("gen-*"):
        if old not in keep:
            shutil.rmtree(old, ignore_errors=True)
    return final

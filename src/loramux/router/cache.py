"""The router's disk cache across restarts: route texts' vectors and the last trained head.

At start-up every adapter's route utterances (and their chat variants) join the router: with
1,000 adapters that was 6,000 texts to encode and a head of 1,000 classes to train, 30 s of a
39 s start on 2 cores, every start. This cache keeps both in the data dir:

- `vectors.npz`: the encoder's name and dimension, the SHA-256 of each text and its vector.
  Only texts that routes learn from are cached here (exemplars and their variants), never a
  request's text. Each write keeps the texts this process used, so the vectors of a deleted
  adapter's utterances go at the next start.
- `head.npz`: the last head trained, with the SHA-256 of everything its training reads (the
  training set's vectors, labels and kinds, the classes, the options, the head it starts from).
  The same inputs train the same head, so a hit gives what training would have given.

A file that cannot be read, or that another encoder wrote, counts as empty (a warning, then
the work is done again); writes go to a temporary file renamed over the old one, so a crash
leaves the old file or the new one; a write that fails (a read-only disk) is a warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from loramux.embed.encoder import Encoder
from loramux.router.head import SoftmaxHead

if TYPE_CHECKING:
    from loramux.router.training import TrainingSet

logger = logging.getLogger(__name__)

VECTORS = "vectors.npz"
HEAD = "head.npz"
_UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


class RouterCache:
    """Vectors of route texts and the last trained head, in `folder` (made on first write)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._file: dict[bytes, npt.NDArray[np.float32]] | None = None
        """Text digest -> vector, as read from `vectors.npz` (None until first needed)."""
        self._used: dict[bytes, npt.NDArray[np.float32]] = {}
        """Text digest -> vector, for every text this process encoded through the cache."""
        self.hits = 0
        self.misses = 0
        self.head_hits = 0

    def encode(self, encoder: Encoder, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """`encoder.encode(texts)`, with the vectors of texts cached earlier read from disk."""
        known = self._load_vectors(encoder)
        keys = [_digest(text.encode("utf-8")) for text in texts]
        first: dict[bytes, int] = {}
        """Digest of each text not cached -> its first position (a text is encoded once)."""
        for i, k in enumerate(keys):
            if k not in known:
                first.setdefault(k, i)
        fresh = {}
        if first:
            computed = encoder.encode([texts[i] for i in first.values()])
            fresh = {k: computed[n] for n, k in enumerate(first)}
        out = np.empty((len(texts), encoder.dim), dtype=np.float32)
        for i, k in enumerate(keys):
            out[i] = fresh[k] if k in fresh else known[k]
            self._used[k] = out[i]
        self.hits += len(texts) - len(first)
        self.misses += len(first)
        if fresh or set(known) - set(self._used):
            self._save_vectors(encoder)
        return out

    def head(
        self,
        training: TrainingSet,
        classes: Sequence[str],
        settings: object,
        warm: SoftmaxHead | None,
        train: Callable[[], SoftmaxHead],
    ) -> SoftmaxHead:
        """The head `train()` makes from these inputs: from `head.npz` when it was trained from
        the same ones (`settings`: the training options, by their repr), else trained and saved."""
        key = _head_key(training, classes, settings, warm)
        path = self.folder / HEAD
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as data:
                    if str(data["key"]) == key and tuple(data["classes"]) == tuple(classes):
                        self.head_hits += 1
                        return SoftmaxHead(
                            data["weights"].astype(np.float32),
                            data["bias"].astype(np.float32),
                            tuple(str(c) for c in data["classes"]),
                        )
            except _UNREADABLE as exc:
                logger.warning("router cache: ignoring %s (%s); training the head", path, exc)
        head = train()
        self._write(
            HEAD,
            key=np.array(key),
            classes=np.array(head.classes),
            weights=head.weights,
            bias=head.bias,
        )
        return head

    def _load_vectors(self, encoder: Encoder) -> dict[bytes, npt.NDArray[np.float32]]:
        if self._file is not None:
            return self._file
        self._file = {}
        path = self.folder / VECTORS
        if not path.is_file():
            return self._file
        try:
            with np.load(path, allow_pickle=False) as data:
                name, dim = str(data["encoder"]), int(data["dim"])
                keys, vectors = data["keys"], data["vectors"].astype(np.float32)
            if name != encoder.name or dim != encoder.dim:
                logger.info("router cache: %s is of encoder %s, not %s", path, name, encoder.name)
                return self._file
            if keys.dtype != np.uint8 or keys.shape != (len(vectors), 32):
                raise ValueError(f"keys of shape {keys.shape} for vectors of {vectors.shape}")
            if vectors.shape != (len(keys), dim):
                raise ValueError(f"{len(keys)} keys for vectors of shape {vectors.shape}")
            self._file = {k.tobytes(): vectors[i] for i, k in enumerate(keys)}
        except _UNREADABLE as exc:
            logger.warning("router cache: ignoring %s (%s); encoding again", path, exc)
        return self._file

    def _save_vectors(self, encoder: Encoder) -> None:
        keys = list(self._used)
        vectors = (
            np.stack([self._used[k] for k in keys])
            if keys
            else np.zeros((0, encoder.dim), dtype=np.float32)
        )
        if self._write(
            VECTORS,
            encoder=np.array(encoder.name),
            dim=np.array(encoder.dim),
            keys=np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32),
            vectors=vectors,
        ):
            self._file = dict(self._used)

    def _write(self, name: str, **arrays: Any) -> bool:
        path = self.folder / name
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except OSError as exc:
            logger.warning("router cache: cannot write %s (%s)", path, exc)
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            return False
        return True


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _head_key(
    training: TrainingSet, classes: Sequence[str], settings: object, warm: SoftmaxHead | None
) -> str:
    h = hashlib.sha256(b"loramux-head-1\0")
    h.update("\0".join(classes).encode("utf-8") + b"\1")
    h.update(np.ascontiguousarray(training.vectors, dtype=np.float32).tobytes())
    h.update("\0".join(training.labels).encode("utf-8") + b"\1")
    h.update(np.ascontiguousarray(training.kinds).tobytes())
    h.update(repr(settings).encode("utf-8") + b"\1")
    if warm is not None:
        h.update("\0".join(warm.classes).encode("utf-8") + b"\1")
        h.update(np.ascontiguousarray(warm.weights).tobytes())
        h.update(np.ascontiguousarray(warm.bias).tobytes())
    return h.hexdigest()

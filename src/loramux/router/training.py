"""The router's training set: every labelled vector the head learns from and the index holds.

Rows come from four places (`Kind`): route exemplars, chat-style variants of them, labelled
calibration data (routes and "none"), and generic out-of-scope texts. The set keeps vectors, so a
route can be added or removed, and the head retrained, without encoding anything again.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from loramux.config import RouteSpec
from loramux.embed.encoder import Encoder
from loramux.router.augment import GENERIC_NEGATIVES, augment_all
from loramux.router.head import NONE


class Kind(enum.IntEnum):
    """Where a training row comes from."""

    EXEMPLAR = 0
    VARIANT = 1
    LABELLED = 2
    NEGATIVE = 3


@dataclass(frozen=True)
class TrainingOptions:
    """How the training set and the head are built.

    Attributes:
        variants: chat-style variants per exemplar (0: none).
        generic_negatives: add the built-in out-of-scope texts to the "none" class.
        negative_max_similarity: drop a generic negative this similar to any in-scope example.
        l2: L2 penalty of the head.
        max_iter: gradient steps when training the head from scratch.
    """

    variants: int = 1
    generic_negatives: bool = True
    negative_max_similarity: float = 0.6
    l2: float = 1e-3
    max_iter: int = 400


@dataclass(frozen=True)
class TrainingSet:
    """Labelled vectors with a stable id per row.

    Attributes:
        vectors: (n, dim) unit vectors.
        labels: route name or `NONE` per row.
        kinds: `Kind` per row.
        ids: unique int64 id per row (the vector index uses them).
    """

    vectors: npt.NDArray[np.float32]
    labels: tuple[str, ...]
    kinds: npt.NDArray[np.int8]
    ids: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def empty(cls, dim: int) -> TrainingSet:
        """A set with no rows."""
        return cls(np.zeros((0, dim), np.float32), (), np.zeros(0, np.int8), np.zeros(0, np.int64))

    def select(self, mask: npt.NDArray[np.bool_]) -> TrainingSet:
        """The rows where `mask` is true."""
        labels = tuple(label for label, keep in zip(self.labels, mask, strict=True) if keep)
        return TrainingSet(self.vectors[mask], labels, self.kinds[mask], self.ids[mask])

    def extend(
        self, vectors: npt.NDArray[np.float32], labels: Sequence[str], kind: Kind
    ) -> TrainingSet:
        """A new set with rows appended (fresh ids)."""
        start = int(self.ids.max()) + 1 if len(self) else 0
        return TrainingSet(
            np.concatenate([self.vectors, vectors.astype(np.float32)]),
            self.labels + tuple(labels),
            np.concatenate([self.kinds, np.full(len(labels), kind, np.int8)]),
            np.concatenate([self.ids, np.arange(start, start + len(labels), dtype=np.int64)]),
        )

    def without_label(self, label: str) -> TrainingSet:
        """The rows of every other label."""
        return self.select(np.array([x != label for x in self.labels], dtype=bool))

    @property
    def index_mask(self) -> npt.NDArray[np.bool_]:
        """Rows the nearest-neighbour index holds: all but the variants (they echo exemplars)."""
        return np.asarray(self.kinds != Kind.VARIANT, dtype=bool)

    @property
    def in_scope_mask(self) -> npt.NDArray[np.bool_]:
        """Rows of real in-scope examples (exemplars and labelled, not variants)."""
        in_scope = np.array([label != NONE for label in self.labels], dtype=bool)
        return in_scope & self.index_mask


def route_rows(
    specs: Sequence[RouteSpec], options: TrainingOptions
) -> tuple[list[str], list[str], list[Kind]]:
    """Texts, labels and kinds for routes' exemplars and their variants."""
    texts: list[str] = []
    labels: list[str] = []
    kinds: list[Kind] = []
    for spec in specs:
        texts += spec.utterances
        labels += [spec.name] * len(spec.utterances)
        kinds += [Kind.EXEMPLAR] * len(spec.utterances)
        if options.variants:
            variants = augment_all(spec.utterances, options.variants)
            texts += variants
            labels += [spec.name] * len(variants)
            kinds += [Kind.VARIANT] * len(variants)
    return texts, labels, kinds


def build_training(
    encoder: Encoder,
    specs: Sequence[RouteSpec],
    labelled: Sequence[tuple[str, str]] = (),
    options: TrainingOptions = TrainingOptions(),
) -> TrainingSet:
    """Encode exemplars, variants, labelled examples and generic negatives into a training set.

    Args:
        encoder: the text encoder.
        specs: the routes.
        labelled: (text, label) pairs, label a route name or `NONE`.
        options: variants and negatives.

    Returns:
        The training set (one encoder call for all texts).
    """
    texts, labels, kinds = route_rows(specs, options)
    texts += [text for text, _ in labelled]
    labels += [label for _, label in labelled]
    kinds += [Kind.LABELLED] * len(labelled)
    negatives = list(GENERIC_NEGATIVES) if options.generic_negatives else []
    unique = list(dict.fromkeys(texts + negatives))
    vectors = encoder.encode(unique)
    row = {text: i for i, text in enumerate(unique)}
    training = TrainingSet.empty(encoder.dim)
    for kind in Kind:
        pick = [i for i, k in enumerate(kinds) if k == kind]
        if pick:
            training = training.extend(
                vectors[[row[texts[i]] for i in pick]], [labels[i] for i in pick], kind
            )
    if negatives:
        neg = vectors[[row[text] for text in negatives]]
        in_scope = training.vectors[training.in_scope_mask]
        if len(in_scope):
            keep = (neg @ in_scope.T).max(axis=1) < options.negative_max_similarity
            neg = neg[keep]
        training = training.extend(neg, [NONE] * len(neg), Kind.NEGATIVE)
    return training

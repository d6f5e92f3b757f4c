"""Saving and loading fitted routers: `fitted.yaml` (readable settings) + `fitted.npz` (arrays).

The YAML file holds the routes, thresholds, scoring settings, the encoder's name and the fit's
estimate; the `.npz` sidecar holds the head's weights and the training set's vectors (so loading
encodes nothing). Arrays are plain numeric arrays read with `allow_pickle=False`: no pickle, ever.
Both files are written to temporary names first and renamed into place.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loramux.config import RouteSpec, format_validation_error, read_yaml
from loramux.embed.encoder import Encoder
from loramux.errors import ConfigError, RouterNotFittedError
from loramux.fileio import atomic_write, atomic_write_text
from loramux.router.base import KbProbe
from loramux.router.baseline import BaselineRouter
from loramux.router.head import SoftmaxHead
from loramux.router.semantic import SemanticRouter, Thresholds
from loramux.router.training import TrainingOptions, TrainingSet

FORMAT = "loramux-router/1"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ThresholdsFile(_Model):
    probability: float
    """Least blended probability of the chosen route."""
    per_route: dict[str, float] = Field(default_factory=dict)
    """Raised probability thresholds of single routes."""
    margin: float
    """Least lead of the chosen route over the next class."""
    similarity: float
    """Least cosine similarity to the chosen route's nearest example."""
    head_weight: float = Field(ge=0, le=1)
    """Share of the head in the blend with the nearest-neighbour vote."""


class FittedFile(_Model):
    format: Literal["loramux-router/1"] = "loramux-router/1"
    kind: Literal["semantic", "baseline"]
    """Which router this is (see `loramux.router.build.ROUTER_CLS`)."""
    encoder: str
    """Name of the encoder the vectors come from; loading with another encoder is refused."""
    target_precision: float | None = None
    estimate: dict[str, Any] = Field(default_factory=dict)
    """Out-of-fold quality measured at fit time (semantic router)."""
    thresholds: ThresholdsFile | None = None
    """Semantic router: scoring and abstention thresholds."""
    threshold: float | None = None
    """Baseline router: least nearest-exemplar similarity."""
    neighbours: int = 10
    temperature: float = 0.05
    options: dict[str, Any] = Field(default_factory=dict)
    """How the training set and head were built (`TrainingOptions`)."""
    classes: list[str] = Field(default_factory=list)
    """Head classes in column order; labels in the sidecar are indices into it."""
    routes: list[RouteSpec]
    arrays: str
    """The `.npz` sidecar, relative to this file."""


@dataclass(frozen=True)
class FitInfo:
    """What a fit measured, saved next to the router."""

    target_precision: float | None = None
    estimate: dict[str, Any] | None = None


def save_router(
    router: SemanticRouter | BaselineRouter, path: Path, info: FitInfo = FitInfo()
) -> None:
    """Write `path` (YAML) and its `.npz` sidecar.

    Args:
        router: a semantic or baseline router.
        path: the YAML file, e.g. `fitted.yaml`; the sidecar is `fitted.npz` beside it.
        info: the fit's target and estimate, kept for reference.
    """
    sidecar = path.with_suffix(".npz")
    common: dict[str, Any] = {
        "format": FORMAT,
        "kind": "semantic" if isinstance(router, SemanticRouter) else "baseline",
        "encoder": router.encoder.name,
        "target_precision": info.target_precision,
        "estimate": info.estimate or {},
        "routes": [spec.model_dump(exclude_defaults=True) for spec in router.routes.values()],
        "arrays": sidecar.name,
        "neighbours": router.neighbours,
    }
    if isinstance(router, SemanticRouter):
        t = router.thresholds
        training, head = router.training, router.head
        col = {name: j for j, name in enumerate(head.classes)}
        arrays: dict[str, np.ndarray[Any, Any]] = {
            "head_weights": head.weights,
            "head_bias": head.bias,
            "vectors": training.vectors,
            "labels": np.array([col[label] for label in training.labels], np.int64),
            "kinds": training.kinds,
            "ids": training.ids,
        }
        doc = {
            **common,
            "thresholds": {**asdict(t), "per_route": dict(t.per_route)},
            "temperature": router.temperature,
            "options": asdict(router.options),
            "classes": list(head.classes),
        }
    else:
        vectors = router.exemplar_vectors
        arrays = {f"route/{name}": vectors[name] for name in router.routes}
        doc = {**common, "threshold": router.threshold}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(sidecar, lambda handle: np.savez(handle, allow_pickle=False, **arrays))
    text = yaml.safe_dump(_plain(doc), sort_keys=False, allow_unicode=True, width=100)
    atomic_write_text(path, text)


def load_router(
    path: Path,
    encoder: Encoder,
    *,
    kb_probe: KbProbe | None = None,
    rag_min_score: float = 0.4,
    **settings: Any,
) -> SemanticRouter | BaselineRouter:
    """Load a router written by `save_router`.

    Args:
        path: the YAML file.
        encoder: the encoder to route with (must be the one the router was fitted with).
        kb_probe: knowledge-base probe for abstained requests.
        rag_min_score: passage score from which an abstained request gets a RAG answer.
        **settings: serving settings for a semantic router (`history_turns`, `history_decay`,
            `exact_search_max`).

    Returns:
        The router.

    Raises:
        ConfigError: the YAML file is missing or invalid.
        RouterNotFittedError: the sidecar is missing or does not match, or the encoder differs.
    """
    try:
        doc = FittedFile.model_validate(read_yaml(path))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from exc
    if doc.encoder != encoder.name:
        raise RouterNotFittedError(
            f"{path} was fitted with encoder {doc.encoder!r} but the embedder is {encoder.name!r}; "
            "fit the router again with `loramux router fit`"
        )
    sidecar = path.parent / doc.arrays
    try:
        with np.load(sidecar, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise RouterNotFittedError(
            f"cannot read the router's arrays {sidecar}: {exc}; fit the router again"
        ) from exc
    try:
        if doc.kind == "baseline":
            return BaselineRouter(
                encoder,
                doc.routes,
                threshold=doc.threshold if doc.threshold is not None else 0.5,
                vectors={spec.name: arrays[f"route/{spec.name}"] for spec in doc.routes},
                kb_probe=kb_probe,
                rag_min_score=rag_min_score,
                neighbours=doc.neighbours,
                exact_search_max=settings.get("exact_search_max", 50_000),
            )
        return _semantic(doc, arrays, encoder, kb_probe, rag_min_score, settings)
    except (KeyError, IndexError, ValueError) as exc:
        raise RouterNotFittedError(
            f"{sidecar} does not match {path} ({exc}); fit the router again"
        ) from exc


def _semantic(
    doc: FittedFile,
    arrays: dict[str, np.ndarray[Any, Any]],
    encoder: Encoder,
    kb_probe: KbProbe | None,
    rag_min_score: float,
    settings: dict[str, Any],
) -> SemanticRouter:
    if doc.thresholds is None:
        raise ValueError("a semantic router needs `thresholds`")
    classes = tuple(doc.classes)
    labels = tuple(classes[int(i)] for i in arrays["labels"])
    training = TrainingSet(
        arrays["vectors"].astype(np.float32),
        labels,
        arrays["kinds"].astype(np.int8),
        arrays["ids"].astype(np.int64),
    )
    head = SoftmaxHead(
        arrays["head_weights"].astype(np.float32), arrays["head_bias"].astype(np.float32), classes
    )
    t = doc.thresholds
    thresholds = Thresholds(t.probability, dict(t.per_route), t.margin, t.similarity, t.head_weight)
    return SemanticRouter(
        encoder,
        doc.routes,
        thresholds=thresholds,
        options=TrainingOptions(**doc.options),
        training=training,
        head=head,
        kb_probe=kb_probe,
        rag_min_score=rag_min_score,
        neighbours=doc.neighbours,
        temperature=doc.temperature,
        **settings,
    )


def _plain(value: Any) -> Any:
    """Numpy scalars and containers to plain Python, for YAML."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value

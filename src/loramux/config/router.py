"""The `router:` and `kb:` sections, and routes files (`configs/routes/*.yaml`) + loader."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from loramux.config.parse import format_validation_error, read_yaml
from loramux.config.strict import Strict, check_adapter_name
from loramux.errors import ConfigError


class RouterConfig(Strict):
    kind: Literal["semantic", "baseline"] = "semantic"
    """Router for `model="auto"`: `semantic` (classifier head, calibrated abstention) or
    `baseline` (max cosine similarity to the exemplars, one global threshold)."""
    routes: Path | None = None
    """Routes file (`configs/routes/*.yaml`); used when there is no `fitted` router."""
    fitted: Path | None = None
    """A fitted router (`fitted.yaml` written by `loramux router fit`), or a router version store
    (a folder `loramux router fit --out <folder>` writes versions into: the active version is
    served, and a newly activated one is swapped in while serving); wins over `routes`."""
    reload_s: float = Field(default=5.0, ge=0)
    """How often the gateway looks for a newly activated version when `fitted` is a version
    store (seconds; 0: only at start-up)."""
    neighbours: int = Field(default=10, ge=1, le=1024)
    """Nearest labelled examples that vote on each request (unfitted routers; a fitted router
    keeps the value it was fitted with)."""
    exact_search_max: int = Field(default=50_000, ge=1)
    """Up to this many exemplars the index searches exactly (faiss flat); above it, HNSW."""
    history_turns: int = Field(default=3, ge=0, le=20)
    """Previous user turns an ambiguous follow-up may take its route from; 0 turns this off."""
    history_decay: float = Field(default=0.5, gt=0, le=1)
    """Weight of each earlier user turn relative to the turn after it, when routing with history."""
    cache_size: int = Field(default=4096, ge=0)
    """Encodings kept in memory (LRU), so the same text is not encoded twice; 0 turns it off."""
    batch_size: int = Field(default=64, ge=1, le=1024)
    """Most requests decided in one encoder pass; concurrent `auto` requests are batched without
    waiting (an idle router decides a lone request at once)."""


class KnowledgeBaseConfig(Strict):
    dir: Path | None = None
    """Folder of the knowledge base (index + chunk store); default `<paths.data_dir>/kb`."""
    sources: list[Path] = Field(default_factory=list)
    """Files or folders `loramux kb ingest` reads when the command line names none."""
    top_k: int = Field(default=4, ge=1, le=50)
    """Passages added to a RAG prompt."""
    min_score: float = Field(default=0.4, ge=-1, le=1)
    """Cosine similarity of the best passage from which an abstained request gets a RAG answer."""
    quote: bool = True
    """End every RAG answer with the sentence of the passages that answers the question, copied
    verbatim with its citation (`rag.quote`): the small model misquotes numbers, the quote
    does not (docs/evaluation.md, `loramux eval rag`). Not added to JSON or tool-call replies."""
    chunk_words: int = Field(default=150, ge=20, le=2000)
    """Longest chunk in words; chunks follow headings and paragraphs (the embedded MiniLM reads
    256 tokens, about 180 words)."""


# -- routes files (configs/routes/*.yaml: what `model="auto"` can route to) ---------------------

ROUTE_TARGET_KEYWORDS = frozenset({"base", "rag"})
"""Route targets that are not adapters: the base model, or a retrieval-augmented answer."""


class RouteSpec(Strict):
    name: str
    """Route name: what the router reports and what labels in calibration data name."""
    target: str | None = None
    """Adapter the route sends to (default: the adapter named like the route), or `base`/`rag`."""
    description: str = ""
    utterances: list[str] = Field(min_length=1)
    """Example requests for this route (exemplars); 10-50 varied phrasings work well."""

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if value == "none":
            raise ValueError("route name 'none' is reserved for out-of-scope labels")
        return check_adapter_name(value)

    @field_validator("target")
    @classmethod
    def _check_target(cls, value: str | None) -> str | None:
        if value is None or value in ROUTE_TARGET_KEYWORDS:
            return value
        return check_adapter_name(value)

    @field_validator("utterances")
    @classmethod
    def _check_utterances(cls, value: list[str]) -> list[str]:
        cleaned = [text.strip() for text in value]
        if any(not text for text in cleaned):
            raise ValueError("utterances must not be empty strings")
        return cleaned

    @property
    def adapter(self) -> str | None:
        """The adapter this route sends to, or None for `base`/`rag` routes."""
        target = self.target or self.name
        return None if target in ROUTE_TARGET_KEYWORDS else target


class RoutesFile(Strict):
    routes: list[RouteSpec] = Field(min_length=1)
    """The routes, each with its exemplar utterances."""

    @field_validator("routes")
    @classmethod
    def _check_unique(cls, value: list[RouteSpec]) -> list[RouteSpec]:
        names = [route.name for route in value]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"route names must be unique; repeated: {', '.join(duplicates)}")
        return value


def load_routes(path: Path) -> list[RouteSpec]:
    """Load a routes file (`routes:` list of `{name, target, description, utterances}`).

    Raises:
        ConfigError: unreadable file or invalid routes; the message names the key.
    """
    try:
        return list(RoutesFile.model_validate(read_yaml(path)).routes)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from exc

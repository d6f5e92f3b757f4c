"""Loading the serving config: YAML file, then `LORAMUX_*` environment, then the CLI's flags.

Relative paths in the file are resolved against the file's folder.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from loramux.config.engine import move_legacy_engine_keys
from loramux.config.parse import format_validation_error, read_yaml, resolve_path
from loramux.config.server import PathsConfig
from loramux.config.serving import LoramuxConfig
from loramux.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("configs/default.yaml")

# Environment variable -> (section, key); a dotted key names a nested section's key.
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "LORAMUX_HOST": ("server", "host"),
    "LORAMUX_PORT": ("server", "port"),
    "LORAMUX_DATA_DIR": ("paths", "data_dir"),
    "LORAMUX_CACHE_DIR": ("paths", "cache_dir"),
    "LORAMUX_ENGINE": ("engine", "kind"),
    "LORAMUX_REMOTE_API_KEY": ("engine", "remote.api_key"),
    "LORAMUX_LOG_FORMAT": ("server", "log_format"),
    "LORAMUX_AUTH": ("auth", "enabled"),
    "LORAMUX_DATABASE_URL": ("registry", "database_url"),
}
# Also LORAMUX_ADMIN_KEY: a plain admin key, hashed at load time into `admin.keys.admin`.
MIN_ADMIN_KEY_CHARS = 32
"""The shortest plain admin key accepted (`LORAMUX_ADMIN_KEY`)."""
MIN_ADMIN_KEY_DISTINCT = 8
"""Different characters a plain admin key must have (refuses `aaaa...`, `abab...`)."""


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
        overrides: section -> key -> value, applied last (the CLI's flags); a dotted key
            names a nested section's key (`engine`: `remote.api_key`).
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
    source = str(path or "defaults")
    engine = data.get("engine")
    if isinstance(engine, dict):
        # old flat keys first, so that an override of their new key wins instead of clashing
        try:
            data["engine"] = move_legacy_engine_keys(engine)
        except ValueError as exc:
            raise ConfigError(f"invalid config in {source}: `engine`: {exc}") from exc
    for var, (section, key) in ENV_OVERRIDES.items():
        if env.get(var):
            _set_key(data, section, key, env[var], source)
    for section, values in (overrides or {}).items():
        for key, value in values.items():
            if value is not None:
                _set_key(data, section, key, value, source)
    if env.get("LORAMUX_ADMIN_KEY"):
        check_admin_key(env["LORAMUX_ADMIN_KEY"])
        admin = data.setdefault("admin", {})
        if not isinstance(admin, dict):
            raise ConfigError(f"`admin` in {path} must be a mapping")
        keys = admin.setdefault("keys", {})
        keys["admin"] = hashlib.sha256(env["LORAMUX_ADMIN_KEY"].encode("utf-8")).hexdigest()
    try:
        config = LoramuxConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from exc
    return _with_absolute_paths(config, base_dir)


def check_admin_key(key: str) -> None:
    """Refuse a plain admin key that is easy to guess (`LORAMUX_ADMIN_KEY`).

    At least `MIN_ADMIN_KEY_CHARS` characters with at least `MIN_ADMIN_KEY_DISTINCT` different
    ones: what `secrets.token_urlsafe(32)` (43 characters) makes. Keys in `admin.keys` are
    sha256 digests, whose length says nothing about the key: those are not checked.

    Raises:
        ConfigError: the key is too short or too repetitive (the message says how to make one).
    """
    stripped = key.strip()
    if len(stripped) >= MIN_ADMIN_KEY_CHARS and len(set(stripped)) >= MIN_ADMIN_KEY_DISTINCT:
        return
    raise ConfigError(
        f"LORAMUX_ADMIN_KEY is too weak ({len(stripped)} characters, {len(set(stripped))} "
        f"different): use at least {MIN_ADMIN_KEY_CHARS} random characters, e.g. "
        """`python -c "import secrets; print(secrets.token_urlsafe(32))"`"""
    )


def _set_key(data: dict[str, Any], section: str, key: str, value: Any, source: str) -> None:
    """Set `section.key` in the raw config, `key` possibly dotted (`remote.api_key`).

    Raises:
        ConfigError: a section on the way is there but not a mapping.
    """
    where = data
    parts = [section, *key.split(".")]
    for depth, part in enumerate(parts[:-1]):
        found = where.setdefault(part, {})
        if not isinstance(found, dict):
            name = ".".join(parts[: depth + 1])
            raise ConfigError(f"`{name}` in {source} must be a mapping")
        where = found
    where[parts[-1]] = value


def _with_absolute_paths(config: LoramuxConfig, base_dir: Path) -> LoramuxConfig:
    paths = PathsConfig(
        data_dir=resolve_path(config.paths.data_dir, base_dir),
        cache_dir=resolve_path(config.paths.cache_dir, base_dir),
    )
    model = config.model
    if model.source != "embedded":
        model = model.model_copy(update={"source": str(resolve_path(Path(model.source), base_dir))})
    embedder = config.embedder
    if embedder.source != "embedded":
        embedder = embedder.model_copy(
            update={"source": str(resolve_path(Path(embedder.source), base_dir))}
        )
    adapters = {
        name: entry.model_copy(update={"path": resolve_path(entry.path, base_dir)})
        for name, entry in config.adapters.items()
    }
    rc = config.router
    router = rc.model_copy(
        update={
            "routes": resolve_path(rc.routes, base_dir) if rc.routes else None,
            "fitted": resolve_path(rc.fitted, base_dir) if rc.fitted else None,
        }
    )
    kb = config.kb.model_copy(
        update={
            "dir": resolve_path(config.kb.dir, base_dir) if config.kb.dir else None,
            "sources": [resolve_path(source, base_dir) for source in config.kb.sources],
        }
    )
    registry = config.registry.model_copy(
        update={
            "import_roots": tuple(resolve_path(p, base_dir) for p in config.registry.import_roots)
        }
    )
    engine = config.engine
    kernels = engine.vllm.lora_kernel_configs
    if isinstance(kernels, Path):
        vllm = engine.vllm.model_copy(
            update={"lora_kernel_configs": resolve_path(kernels, base_dir)}
        )
        engine = engine.model_copy(update={"vllm": vllm})
    eval_dir = config.dashboard.eval_dir or paths.data_dir / "eval"
    dashboard = config.dashboard.model_copy(update={"eval_dir": resolve_path(eval_dir, base_dir)})
    decisions_dir = config.decisions.dir or paths.data_dir / "decisions"
    decisions = config.decisions.model_copy(update={"dir": resolve_path(decisions_dir, base_dir)})
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
            "decisions": decisions,
        }
    )

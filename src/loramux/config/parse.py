"""The one YAML parser, validation errors as one line naming the keys, and path resolution."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from loramux.errors import ConfigError


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


def resolve_path(path: Path, base_dir: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (base_dir / path).resolve()

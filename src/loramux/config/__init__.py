"""Configuration: pydantic models for every YAML file loramux reads, and the one YAML parser.

Every model rejects unknown keys, so a typo in a config file is an error that names the key rather
than a silently ignored setting. Relative paths in a file are resolved against that file's folder.
A few settings can be overridden from the environment (see `ENV_OVERRIDES`).

One module per component, as vLLM's `vllm/config/`: `server` (server, paths, model, embedder),
`engine`, `router` (router, kb, routes files), `registry` (adapters, registry, admin, auth),
`limits` (limits, supervisor), `monitoring` (metrics, dashboard), `serving` (the whole serving
config), `train`, `parse` (the YAML parser) and `load` (file + environment + flags). This module
re-exports their public names, so `from loramux.config import X` is the one import to use.
"""

from loramux.config.engine import (
    LEGACY_ENGINE_KEYS,
    EngineConfig,
    FakeEngineConfig,
    HFEngineConfig,
    RemoteEngineConfig,
    VLLMEngineConfig,
)
from loramux.config.limits import LimitsSettings, SupervisorSettings
from loramux.config.load import DEFAULT_CONFIG_PATH, ENV_OVERRIDES, load_config
from loramux.config.monitoring import DashboardSettings, DecisionLogSettings, MetricsSettings
from loramux.config.parse import format_validation_error, read_yaml, resolve_path
from loramux.config.registry import (
    AdapterEntry,
    AdapterLimits,
    AdminSettings,
    AuthSettings,
    ExperimentSettings,
    RegistrySettings,
)
from loramux.config.router import (
    ROUTE_TARGET_KEYWORDS,
    KnowledgeBaseConfig,
    RouterConfig,
    RoutesFile,
    RouteSpec,
    load_routes,
)
from loramux.config.server import BaseModelConfig, EmbedderConfig, PathsConfig, ServerConfig
from loramux.config.serving import LoramuxConfig
from loramux.config.strict import (
    ADAPTER_NAME_RE,
    RESERVED_MODEL_NAMES,
    Strict,
    check_adapter_name,
)
from loramux.config.train import (
    AugmentSettings,
    DistillSettings,
    EarlyStoppingSettings,
    L2Settings,
    LoraSettings,
    OptimSettings,
    ReplaySettings,
    TrainConfig,
    TrainDataSettings,
    load_train_config,
)

__all__ = [
    "AugmentSettings",
    "ADAPTER_NAME_RE",
    "DEFAULT_CONFIG_PATH",
    "ENV_OVERRIDES",
    "LEGACY_ENGINE_KEYS",
    "RESERVED_MODEL_NAMES",
    "ROUTE_TARGET_KEYWORDS",
    "AdapterEntry",
    "AdapterLimits",
    "AdminSettings",
    "AuthSettings",
    "BaseModelConfig",
    "DashboardSettings",
    "DecisionLogSettings",
    "DistillSettings",
    "EarlyStoppingSettings",
    "EmbedderConfig",
    "EngineConfig",
    "ExperimentSettings",
    "FakeEngineConfig",
    "HFEngineConfig",
    "KnowledgeBaseConfig",
    "L2Settings",
    "LimitsSettings",
    "LoraSettings",
    "LoramuxConfig",
    "MetricsSettings",
    "OptimSettings",
    "PathsConfig",
    "RegistrySettings",
    "RemoteEngineConfig",
    "ReplaySettings",
    "RouteSpec",
    "RouterConfig",
    "RoutesFile",
    "ServerConfig",
    "Strict",
    "SupervisorSettings",
    "TrainConfig",
    "TrainDataSettings",
    "VLLMEngineConfig",
    "check_adapter_name",
    "format_validation_error",
    "load_config",
    "load_routes",
    "load_train_config",
    "read_yaml",
    "resolve_path",
]

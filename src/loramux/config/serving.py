"""`LoramuxConfig`: the whole serving config, one field per top-level YAML section."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from loramux.config.engine import EngineConfig
from loramux.config.limits import LimitsSettings, SupervisorSettings
from loramux.config.monitoring import DashboardSettings, DecisionLogSettings, MetricsSettings
from loramux.config.registry import AdapterEntry, AdminSettings, AuthSettings, RegistrySettings
from loramux.config.router import KnowledgeBaseConfig, RouterConfig
from loramux.config.server import BaseModelConfig, EmbedderConfig, PathsConfig, ServerConfig
from loramux.config.strict import Strict, check_adapter_name


class LoramuxConfig(Strict):
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
    decisions: DecisionLogSettings = DecisionLogSettings()
    limits: LimitsSettings = LimitsSettings()
    supervisor: SupervisorSettings = SupervisorSettings()

    @field_validator("adapters")
    @classmethod
    def _check_adapter_names(cls, value: dict[str, AdapterEntry]) -> dict[str, AdapterEntry]:
        for name in value:
            check_adapter_name(name)
        return value

    @model_validator(mode="after")
    def _check_limits_scope(self) -> LoramuxConfig:
        if self.auth.limits_scope == "fleet" and self.registry.store != "postgres":
            raise ValueError(
                "auth.limits_scope: fleet shares rate limits through the PostgreSQL registry; "
                f"set registry.store: postgres (now {self.registry.store}) or use "
                "auth.limits_scope: gateway"
            )
        return self

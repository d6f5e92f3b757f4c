"""Training configs (`loramux train --config configs/train/<task>.yaml`) and their loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from loramux.config.parse import format_validation_error, read_yaml, resolve_path
from loramux.config.server import BaseModelConfig
from loramux.config.strict import Strict, check_adapter_name
from loramux.errors import ConfigError


class LoraSettings(Strict):
    r: int = Field(default=8, ge=1, le=256)
    """LoRA rank."""
    alpha: int = Field(default=16, ge=1)
    """LoRA scaling numerator (scale = alpha / r)."""
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"])
    """Module names of the base model that get LoRA weights."""


class OptimSettings(Strict):
    learning_rate: float = Field(default=2e-4, gt=0)
    epochs: int = Field(default=5, ge=1)
    batch_size: int = Field(default=8, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    """Gradient accumulation steps (effective batch = batch_size * grad_accum)."""
    max_length: int = Field(default=256, ge=16)
    """Examples are cut to this many tokens."""
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)


class ReplaySettings(Strict):
    enabled: bool = False
    """Mix general instruction data into training, so the adapter keeps general behaviour."""
    data: Path | None = None
    """Chat JSONL of general examples (default: the shipped demo/data/general/replay.jsonl)."""
    ratio: float = Field(default=0.3, ge=0, le=1)
    """Replay examples per task example."""


class DistillSettings(Strict):
    enabled: bool = False
    """Add a KL term pulling the adapter's token distributions towards the frozen base model's."""
    weight: float = Field(default=0.5, ge=0)
    temperature: float = Field(default=1.0, gt=0)


class L2Settings(Strict):
    enabled: bool = False
    """Penalise the squared norm of the LoRA update weights."""
    weight: float = Field(default=1e-4, ge=0)


class EarlyStoppingSettings(Strict):
    enabled: bool = True
    """Stop when validation loss has not improved for `patience` epochs; keep the best epoch."""
    patience: int = Field(default=2, ge=1)
    validation_split: float = Field(default=0.1, ge=0, lt=1)
    """Share of the training data held out for validation (when no `data.validation` file)."""


class TrainDataSettings(Strict):
    train: Path
    """Chat JSONL: one `{"messages": [...]}` per line; loss is taken on assistant turns only."""
    validation: Path | None = None


class TrainConfig(Strict):
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
        model = model.model_copy(update={"source": str(resolve_path(Path(model.source), base))})
    return config.model_copy(
        update={
            "data": d.model_copy(
                update={
                    "train": resolve_path(d.train, base),
                    "validation": resolve_path(d.validation, base) if d.validation else None,
                }
            ),
            "replay": replay.model_copy(
                update={"data": resolve_path(replay.data, base) if replay.data else None}
            ),
            "output_dir": resolve_path(config.output_dir, base),
            "cache_dir": resolve_path(config.cache_dir, base),
            "model": model,
        }
    )

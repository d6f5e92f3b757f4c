"""Loading the `hf` engine's base model and tokenizer (transformers), off the event loop.

Only `serve/hf.py` calls this; it imports torch and transformers lazily, inside the function.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loramux.config import EngineConfig

logger = logging.getLogger(__name__)


@dataclass
class LoadedBase:
    """What the engine keeps of a loaded base model."""

    model: Any
    tokenizer: Any
    device: Any
    context_length: int
    eos_ids: set[int]
    pad_id: int


def load_base(model_dir: Path, config: EngineConfig, default_context: int) -> LoadedBase:
    """Load the model folder on the configured device and dtype, in eval mode.

    Args:
        model_dir: an HF model folder.
        config: the `engine:` section (device, dtype, threads, context length).
        default_context: the context length when neither the config nor the model says one.
    """
    from loramux.models import quiet_libraries, set_offline

    set_offline()
    quiet_libraries()  # no library warnings or progress bars in the server log
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if config.threads:
        torch.set_num_threads(config.threads)
    use_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    device: Any = torch.device("cuda" if use_cuda else "cpu")
    dtype_name = config.dtype if config.dtype != "auto" else ("bfloat16" if use_cuda else "float32")
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype_name))
    model = model.to(device).eval()
    limit = getattr(model.config, "max_position_embeddings", None) or default_context
    context_length = min(config.context_length or default_context, limit)
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        eos_ids.add(tokenizer.eos_token_id)
    pad = tokenizer.pad_token_id
    pad_id = pad if pad is not None else min(eos_ids, default=0)
    logger.info(
        "hf engine loaded %s on %s (%s) in %.1f s; context %d tokens",
        model_dir,
        device,
        dtype_name,
        time.perf_counter() - t0,
        context_length,
    )
    return LoadedBase(model, tokenizer, device, context_length, eos_ids, pad_id)

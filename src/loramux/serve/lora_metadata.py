"""The multi-LoRA kernels' per-step metadata, computed on the host: no GPU sync per step.

Before each forward pass vLLM's GPU punica wrapper (`PunicaWrapperGPU.update_metadata`) turns the
batch's row -> adapter mapping into the tensors its Triton kernels read (`LoRAKernelMeta`): rows
sorted by adapter, the adapters present, rows per adapter. vLLM 0.26 computes them from the GPU
copy of the mapping with `torch.all`, `torch.unique` and a read of the result's size; each read
waits until the GPU has finished all the work queued before it ("TODO avoid gpu<->cpu sync
here", in vLLM's source). With async scheduling the host prepares step N+1 while the GPU runs
step N, so a wait there puts the host's preparation back on the critical path.

The mapping starts on the host (`LoRAMapping`, tuples of ints), so the same tensors are computed
there with numpy and copied up asynchronously.
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np
import torch


def slot_mapping(lora_ids: tuple[int, ...], lora_index_to_id: list[int | None]) -> np.ndarray:
    """Each row's adapter slot (-1: none) from vLLM's per-row LoRA ids (0: none), on the host:
    what vLLM's `convert_mapping` computes and copies to the GPU."""
    ids = np.asarray(lora_ids, dtype=np.int64)
    if ids.size == 0:
        return ids.astype(np.int32)
    slot_of = {lid: i for i, lid in enumerate(lora_index_to_id) if lid is not None}
    distinct, inverse = np.unique(ids, return_inverse=True)
    slots = np.array([slot_of[int(i)] if i > 0 else -1 for i in distinct], dtype=np.int32)
    return slots[inverse.reshape(-1)]


def fill_kernel_meta(meta: Any, mapping: np.ndarray) -> None:
    """vLLM's `LoRAKernelMeta.prepare_tensors`, computed from the host copy of the mapping.

    vLLM computes it from the GPU copy, with `torch.all`, `torch.unique` and a read of the
    result's size: each waits for the GPU to finish all queued work, every step, which undoes
    vLLM's async scheduling (the host prepares step N+1 while the GPU runs step N). Here the
    same tensors are computed on the host and copied up without a wait."""
    meta._reset()
    if mapping.size == 0 or bool((mapping == -1).all()):
        meta.no_lora_flag_cpu[0] = True
        return
    n = mapping.size
    order = np.argsort(mapping, kind="stable")
    ids, counts = np.unique(mapping, return_counts=True)
    k = ids.size
    host = torch.from_numpy(
        np.concatenate([mapping, order, ids, counts, np.cumsum(counts)]).astype(np.int32)
    )
    if torch.cuda.is_available():
        host = host.pin_memory()
    dev = host.to(meta.token_lora_mapping.device, non_blocking=True)
    meta.token_lora_mapping[:n].copy_(dev[:n])
    meta.token_indices_sorted_by_lora_ids[:n].copy_(dev[n : 2 * n])
    meta.active_lora_ids[:k].copy_(dev[2 * n : 2 * n + k])
    meta.num_tokens_per_lora[:k].copy_(dev[2 * n + k : 2 * n + 2 * k])
    meta.lora_token_start_loc[1 : 1 + k].copy_(dev[2 * n + 2 * k :])
    active = k
    if meta.captured_lora_counts:
        at = bisect.bisect_left(meta.captured_lora_counts, active)
        if at < len(meta.captured_lora_counts):
            active = meta.captured_lora_counts[at]
    meta.num_active_loras_cpu[0] = active


def update_metadata(
    self: Any,
    mapping: Any,
    lora_index_to_id: list[int | None],
    max_loras: int,
    vocab_size: int,
    **kwargs: Any,
) -> None:
    """`PunicaWrapperGPU.update_metadata` with the kernel metadata from the host."""
    self.is_prefill = mapping.is_prefill
    self._update_base_metadata(mapping, lora_index_to_id, max_loras, vocab_size)
    fill_kernel_meta(self.token_mapping_meta, slot_mapping(mapping.index_mapping, lora_index_to_id))
    fill_kernel_meta(
        self.prompt_mapping_meta, slot_mapping(mapping.prompt_mapping, lora_index_to_id)
    )

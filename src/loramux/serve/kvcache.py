"""Batch surgery on a transformers `DynamicCache` for continuous batching.

Rows are left-padded: every row's tokens end at the last column, and the attention mask marks the
padding. Joining two batches pads the shorter one on the left; dropping rows also drops leading
columns that have become padding for every remaining row, so the cache does not grow forever.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def _layers(cache: Any) -> list[Any]:
    layers: list[Any] = cache.layers
    for layer in layers:
        if not hasattr(layer, "keys") or not hasattr(layer, "values"):
            raise TypeError(f"unsupported cache layer {type(layer).__name__}")
    return layers


def concat(
    cache_a: Any, mask_a: torch.Tensor, cache_b: Any, mask_b: torch.Tensor
) -> tuple[Any, torch.Tensor]:
    """Append batch b's rows after batch a's; returns a's cache (changed in place) and the mask."""
    width = max(mask_a.shape[1], mask_b.shape[1])
    pad_a, pad_b = width - mask_a.shape[1], width - mask_b.shape[1]
    for la, lb in zip(_layers(cache_a), _layers(cache_b), strict=True):
        la.keys = torch.cat([_pad_seq(la.keys, pad_a), _pad_seq(lb.keys, pad_b)], dim=0)
        la.values = torch.cat([_pad_seq(la.values, pad_a), _pad_seq(lb.values, pad_b)], dim=0)
    mask = torch.cat([F.pad(mask_a, (pad_a, 0)), F.pad(mask_b, (pad_b, 0))], dim=0)
    return cache_a, mask


def select(cache: Any, mask: torch.Tensor, keep: list[int]) -> tuple[Any, torch.Tensor]:
    """Keep only rows `keep`, then trim columns that are padding in every kept row."""
    index = torch.tensor(keep, device=mask.device)
    mask = mask.index_select(0, index)
    used = mask.sum(dim=0).nonzero()
    start = int(used[0].item()) if used.numel() else 0
    for layer in _layers(cache):
        layer.keys = layer.keys.index_select(0, index)[:, :, start:, :]
        layer.values = layer.values.index_select(0, index)[:, :, start:, :]
    return cache, mask[:, start:]


def _pad_seq(t: torch.Tensor, pad: int) -> torch.Tensor:
    """Left-pad a [batch, heads, seq, dim] tensor along seq."""
    return F.pad(t, (0, 0, pad, 0)) if pad else t

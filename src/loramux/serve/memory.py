"""Giving memory back after an in-process engine is stopped.

Dropping the last reference to a model is not enough for the process's RSS to fall: its modules
and hooks form reference cycles that wait for the cyclic collector, CUDA keeps freed blocks in
torch's caching allocator, and glibc keeps freed heap pages on its free lists. `release_memory`
does all three, so an engine rebuilt by the supervisor (`serve.supervisor`) replaces the old
one's memory instead of adding to it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from typing import Any

logger = logging.getLogger(__name__)


def release_memory(device: Any = None) -> None:
    """Collect garbage, empty torch's CUDA cache when `device` is a CUDA device, and ask glibc
    to return free heap pages to the system (`malloc_trim`; a no-op elsewhere).

    Args:
        device: the torch device the engine used (None: the CPU only).
    """
    gc.collect()
    if getattr(device, "type", None) == "cuda":
        import torch

        torch.cuda.empty_cache()
    trim_heap()


def trim_heap() -> bool:
    """`malloc_trim(0)`: glibc gives its free heap pages back to the system. Returns False where
    there is no glibc (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True

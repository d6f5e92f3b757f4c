"""Where the embedder runs: the torch device of `embedder.device`.

Used by the router and the knowledge base alike (they share one encoder). torch is imported in
the function, not when this module is imported.
"""

from __future__ import annotations

from loramux.config import EmbedderConfig
from loramux.errors import ConfigError


def embedder_device(embedder: EmbedderConfig) -> str:
    """The torch device of `embedder.device`: `auto` is `cuda` when torch sees a GPU, else `cpu`.

    torch is imported here, not when `loramux.api` is imported.

    Raises:
        ConfigError: `cuda` asked for where torch sees no GPU.
    """
    if embedder.device == "cpu":
        return "cpu"
    try:
        import torch
    except ImportError:  # the encoder itself will say what to install
        cuda = False
    else:
        cuda = torch.cuda.is_available()
    if embedder.device == "cuda" and not cuda:
        raise ConfigError(
            "`embedder.device: cuda`: torch sees no CUDA GPU here; use `auto` or `cpu`"
        )
    return "cuda" if cuda else "cpu"

"""Puts loramux's fused multi-LoRA kernel (`lora_fused.py`) into a vLLM engine.

As `lora_expand_worker.py` does for the masked expand: with `engine.vllm.lora_kernels: fused`,
loramux passes `FusedLoRA` as vLLM's `worker_extension_cls`; vLLM imports this module in its
engine-core process before the model loads, and the import calls `install()`, which replaces
the GPU punica wrapper's `add_lora_linear` (vLLM's zero + shrink + expand) by one custom op.
Batches of more rows than the `fused.json` table covers (prefill chunks), and ranks the kernel
does not take, run vLLM's own shrink and expand inside the same op. Nothing else imports this
module.

(No `from __future__ import annotations` here: torch infers the custom op's schema from the
annotations of `_fused_op`.)
"""

import logging
from typing import Any

import torch

from loramux.serve.lora_fused import fused_lora, rows_limit, supports_rank

log = logging.getLogger(__name__)

_vllm: dict[str, Any] = {}
"""vLLM's own `lora_shrink` and `lora_expand`, for the batches the fused kernel leaves."""


def _fused_op(
    y: torch.Tensor,
    x: torch.Tensor,
    lora_a_weights: list[torch.Tensor],
    lora_b_weights: list[torch.Tensor],
    token_lora_mapping: torch.Tensor,
    token_indices_sorted_by_lora_ids: torch.Tensor,
    num_tokens_per_lora: torch.Tensor,
    lora_token_start_loc: torch.Tensor,
    lora_ids: torch.Tensor,
    no_lora_flag_cpu: torch.Tensor,
    num_active_loras: torch.Tensor,
    scale: float,
    add_inputs: bool,
) -> None:
    rank = lora_b_weights[0].size(-1)
    if x.size(0) <= rows_limit() and supports_rank(rank):
        fused_lora(
            y, x, lora_a_weights, lora_b_weights, token_lora_mapping, no_lora_flag_cpu,
            scale=scale, add_inputs=add_inputs,
        )  # fmt: skip
        return
    meta = (
        token_lora_mapping, token_indices_sorted_by_lora_ids, num_tokens_per_lora,
        lora_token_start_loc, lora_ids, no_lora_flag_cpu, num_active_loras,
    )  # fmt: skip
    buffer = torch.empty(
        (len(lora_a_weights), x.size(0), rank), dtype=torch.float32, device=x.device
    )
    _vllm["shrink"](x, lora_a_weights, buffer, *meta, scale)
    _vllm["expand"](buffer, lora_b_weights, y, *meta, offset_start=0, add_inputs=add_inputs)


def _fused_fake(*args: Any, **kwargs: Any) -> None:
    """The op's shape function for torch.compile: it returns nothing and writes `y` in place."""
    return None


def _add_lora_linear(
    self: Any,
    y: torch.Tensor,
    x: torch.Tensor,
    lora_a_stacked: tuple[torch.Tensor, ...],
    lora_b_stacked: tuple[torch.Tensor, ...],
    scale: float,
    output_slices: tuple[int, ...],
    *,
    buffer: torch.Tensor | None = None,
    **kwargs: Any,
) -> None:
    """`PunicaWrapperGPU.add_lora_linear` by one op (same arguments, same semantics)."""
    assert buffer is None, "vLLM's add_lora_linear makes its own buffer"
    assert len(lora_a_stacked) == len(lora_b_stacked) == len(output_slices)
    add_inputs = bool(kwargs.pop("add_inputs", True))
    x = x.view(-1, x.shape[-1])
    meta = self.token_mapping_meta.meta_args(x.size(0), self.lora_config.specialize_active_lora)
    torch.ops.vllm.loramux_fused_lora(
        y.view(-1, y.shape[-1]), x, list(lora_a_stacked), list(lora_b_stacked), *meta,
        scale, add_inputs,
    )  # fmt: skip


_installed = False


def install() -> None:
    """Route vLLM's GPU punica wrapper's `add_lora_linear` through `fused_lora` (once)."""
    global _installed
    if _installed:
        return
    from vllm.lora.ops.triton_ops import lora_expand, lora_shrink
    from vllm.lora.punica_wrapper import punica_gpu
    from vllm.utils.torch_utils import direct_register_custom_op

    _vllm.update(shrink=lora_shrink, expand=lora_expand)
    # a custom op, like vLLM's own: torch.compile keeps it opaque, CUDA graphs capture its
    # launches; the choice between fused and vLLM's kernels by batch rows is made inside it
    direct_register_custom_op(
        op_name="loramux_fused_lora",
        op_func=_fused_op,
        mutates_args=["y"],
        fake_impl=_fused_fake,
    )
    punica_gpu.PunicaWrapperGPU.add_lora_linear = _add_lora_linear
    _installed = True
    log.info(
        "multi-LoRA linear layers: loramux's fused kernel up to %d rows "
        "(engine.vllm.lora_kernels: fused)",
        rows_limit(),
    )


class FusedLoRA:
    """vLLM `worker_extension_cls` (see the module docstring); it adds no methods to the worker."""


install()

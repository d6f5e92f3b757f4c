"""One loaded model for evaluation: the frozen base model with any number of LoRA adapters on it.

Base and adapters share the base weights in memory (PEFT): `use(None)` runs the base model with
every adapter layer disabled, `use("hr")` runs with that adapter. This is the only module of
`loramux.eval` that loads models (transformers and peft, lazily); `generation` and `scoring` import
torch, lazily too, for the tensors they feed it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loramux.config import AdapterLimits
from loramux.errors import AdapterError, InvalidRequestError

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")


def check_device(device: str) -> None:
    """Refuse a device other than auto, cpu or cuda.

    Raises:
        InvalidRequestError: naming the choices.
    """
    if device not in DEVICES:
        raise InvalidRequestError(
            f"device {device!r}: choose auto, cpu or cuda", param="device", code="invalid_device"
        )


@dataclass(frozen=True)
class AdapterSpec:
    """An adapter to evaluate: the name it is reported under and its PEFT folder."""

    name: str
    path: Path


class EvalModel:
    """The base model plus adapters, on one device, in inference mode."""

    def __init__(self, model: Any, tokenizer: Any, device: Any, slots: dict[str, str]) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self._slots = slots  # reported name -> PEFT adapter name
        pad = tokenizer.pad_token_id
        self.pad_id: int = pad if pad is not None else int(tokenizer.eos_token_id or 0)

    @property
    def adapters(self) -> list[str]:
        return list(self._slots)

    @classmethod
    def load(
        cls,
        base_dir: Path,
        adapters: Sequence[AdapterSpec] = (),
        *,
        device: str = "auto",
        threads: int | None = None,
        base_name: str | None = None,
        limits: AdapterLimits | None = None,
    ) -> EvalModel:
        """Load the base model and every adapter; float32 on CPU, bfloat16 on a GPU.

        Every adapter goes through the registry's checks first (PEFT LoRA, safetensors, trained
        for this base model, target modules and tensor shapes that fit it).

        Args:
            base_dir: the base model's HF folder.
            adapters: the adapters to load, each under its reported name.
            device: auto (a CUDA GPU when there is one), cpu or cuda.
            threads: torch CPU threads (default: torch's choice).
            base_name: the base model's id adapters must have been trained for (default: the
                folder's name).
            limits: rank and size limits (default: the registry's defaults).

        Raises:
            AdapterError: an adapter folder is missing, not a safetensors LoRA folder, or does not
                fit the base model.
            InvalidRequestError: an unknown device, or cuda without a GPU.
        """
        from loramux.adapters.validation import check_adapter_folder, spec_from_model
        from loramux.models import set_offline
        from loramux.serve.engine import check_adapter_files

        check_device(device)
        for spec in adapters:
            if not spec.path.is_dir():
                raise AdapterError(f"adapter {spec.name!r}: {spec.path} is not a folder")
            check_adapter_files(spec.path)
        set_offline()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        # Our progress lines say what is happening; transformers leaves this one unannotated.
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

        if threads:
            torch.set_num_threads(threads)
        if device == "cuda" and not torch.cuda.is_available():
            raise InvalidRequestError(
                "device cuda: no CUDA GPU is visible here; use auto or cpu",
                param="device",
                code="invalid_device",
            )
        use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        where = torch.device("cuda" if use_cuda else "cpu")
        dtype = torch.bfloat16 if use_cuda else torch.float32
        t0 = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        model: Any = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)
        model = model.to(where).eval()
        base = spec_from_model(model, name=base_name or base_dir.name)
        for spec in adapters:
            check_adapter_folder(
                spec.path, name=spec.name, base=base, limits=limits or AdapterLimits()
            )
        slots: dict[str, str] = {}
        if adapters:
            from peft import PeftModel

            for number, spec in enumerate(adapters):
                slot = f"eval{number}"  # PEFT names must be module-safe; the reported name may not
                try:
                    if number == 0:
                        model = PeftModel.from_pretrained(
                            model, spec.path, adapter_name=slot, is_trainable=False
                        )
                    else:
                        model.load_adapter(spec.path, adapter_name=slot, is_trainable=False)
                except Exception as exc:  # PEFT raises many types for a folder that does not fit
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    raise AdapterError(
                        f"adapter {spec.name!r} ({spec.path}) does not load onto the base model: "
                        f"{type(exc).__name__}: {first}"
                    ) from exc
                slots[spec.name] = slot
            model.eval()
        logger.info(
            "eval model loaded on %s with %d adapters in %.1f s",
            where,
            len(slots),
            time.perf_counter() - t0,
        )
        return cls(model, tokenizer, where, slots)

    @contextlib.contextmanager
    def use(self, adapter: str | None) -> Iterator[Any]:
        """Yield the model to call: the base model (`None`) or the base with one adapter on."""
        if adapter is None:
            if self._slots:
                with self.model.disable_adapter():
                    yield self.model
            else:
                yield self.model
            return
        self.model.set_adapter(self._slots[adapter])
        yield self.model

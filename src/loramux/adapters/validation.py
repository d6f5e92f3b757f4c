"""Checks an adapter folder against the base model before any traffic can reach it.

What is checked, in order, without importing torch or PEFT and without unpickling anything:
file sizes and count, no links and no pickle files (`.bin`, `.pt`, ... are refused, never opened),
a PEFT LoRA config for this base model (`inspect_adapter`), rank within the serving limit,
target modules that exist in the base model, and the safetensors header: every tensor is the
LoRA A or B matrix of a declared target module, with shapes that match the rank (and the base
model's layer sizes when they are known), and data offsets that tile the file exactly.

The base model is described by a `BaseModelSpec`: its name, the suffixes of its linear modules
(`q_proj`, ...) and their sizes, derived from its `config.json` (`spec_from_hf_config`) or from a
loaded model (`spec_from_model`).
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loramux.adapters.version import (
    CONFIG_FILE,
    PICKLE_SUFFIXES,
    WEIGHTS_FILE,
    AdapterVersion,
    inspect_adapter,
    read_adapter_config,
)
from loramux.config import AdapterLimits
from loramux.errors import AdapterError, AdapterTooLargeError

CARD_FILE = "loramux-card.json"
MAX_HEADER_BYTES = 16 << 20
MAX_CARD_BYTES = 1 << 20
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
_TENSOR_NAME = re.compile(
    r"^base_model\.model\.(?P<module>[A-Za-z0-9_.]+)\.lora_(?P<ab>[AB])\.weight$"
)

LLAMA_MODULES = frozenset(
    {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
)
"""Linear module suffixes of Llama-family models (SmolLM2 among them)."""
_LLAMA_LIKE = frozenset(
    {"llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "olmo", "granite"}
)


@dataclass(frozen=True)
class BaseModelSpec:
    """What the registry needs to know about the base model to check an adapter against it."""

    name: str
    """Base model id; adapters must name it (or a path ending in it) in their config."""
    module_suffixes: frozenset[str]
    """Last name component of every linear module LoRA can target (`q_proj`, ...)."""
    module_shapes: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    """(in_features, out_features) per module suffix, when known; checked against A/B shapes."""


@dataclass(frozen=True)
class CheckedAdapter:
    """An adapter folder that passed every check."""

    version: AdapterVersion
    size_bytes: int
    card: dict[str, Any]
    """The training card (`loramux-card.json`) when the folder has one, else `{}`."""


def spec_from_hf_config(config: Path | Mapping[str, Any], *, name: str) -> BaseModelSpec:
    """Describe a base model from its HF `config.json` (a file, its folder, or the parsed dict).

    Knows the Llama family (llama, mistral, qwen2, gemma, ...) and phi3; for other architectures
    use `spec_from_model` on the loaded model.

    Raises:
        AdapterError: unreadable config or an architecture this function does not know.
    """
    if isinstance(config, Path):
        path = config / "config.json" if config.is_dir() else config
        try:
            data: Mapping[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise AdapterError(f"cannot read the base model config {path}: {exc}") from exc
    else:
        data = config
    kind = str(data.get("model_type", ""))
    try:
        hidden = int(data["hidden_size"])
        inter = int(data["intermediate_size"])
        heads = int(data["num_attention_heads"])
        kv_heads = int(data.get("num_key_value_heads") or heads)
        head_dim = int(data.get("head_dim") or hidden // heads)
    except (KeyError, TypeError, ValueError) as exc:
        raise AdapterError(f"base model config of {name} lacks layer sizes ({exc})") from exc
    q_out, kv_out = heads * head_dim, kv_heads * head_dim
    if kind in _LLAMA_LIKE:
        shapes = {
            "q_proj": (hidden, q_out),
            "k_proj": (hidden, kv_out),
            "v_proj": (hidden, kv_out),
            "o_proj": (q_out, hidden),
            "gate_proj": (hidden, inter),
            "up_proj": (hidden, inter),
            "down_proj": (inter, hidden),
        }
    elif kind == "phi3":
        shapes = {
            "qkv_proj": (hidden, q_out + 2 * kv_out),
            "o_proj": (q_out, hidden),
            "gate_up_proj": (hidden, 2 * inter),
            "down_proj": (inter, hidden),
        }
    else:
        raise AdapterError(
            f"cannot derive the LoRA target modules of model_type {kind!r} from its config; "
            "describe the base model with spec_from_model(loaded_model)"
        )
    return BaseModelSpec(name=name, module_suffixes=frozenset(shapes), module_shapes=shapes)


def spec_from_model(model: Any, *, name: str) -> BaseModelSpec:
    """Describe a base model from a loaded torch model: every module with in/out features."""
    shapes: dict[str, tuple[int, int]] = {}
    ambiguous: set[str] = set()
    for module_name, module in model.named_modules():
        if not hasattr(module, "in_features") or not hasattr(module, "out_features"):
            continue
        suffix = module_name.rsplit(".", 1)[-1]
        shape = (int(module.in_features), int(module.out_features))
        if shapes.setdefault(suffix, shape) != shape:
            ambiguous.add(suffix)
    suffixes = frozenset(shapes)
    known = {k: v for k, v in shapes.items() if k not in ambiguous}
    return BaseModelSpec(name=name, module_suffixes=suffixes, module_shapes=known)


def check_files(folder: Path, limits: AdapterLimits, *, name: str) -> int:
    """Check the files of an adapter folder (top level) before anything reads them.

    Returns:
        Their total size in bytes.

    Raises:
        AdapterError: a link or pickle file; AdapterTooLargeError: over a size or count limit.
    """
    total = count = 0
    for entry in sorted(folder.iterdir()):
        if entry.is_symlink():
            raise AdapterError(f"adapter {name!r}: {entry.name} is a link; copy the real file in")
        if entry.suffix in PICKLE_SUFFIXES:
            raise AdapterError(
                f"adapter {name!r}: {entry.name} would be loaded with pickle, which can run code; "
                f"convert the weights to {WEIGHTS_FILE} and remove it"
            )
        if not entry.is_file():
            continue
        size = entry.stat().st_size
        count += 1
        total += size
        check_size(name, entry.name, size, total, count, limits)
    return total


def check_size(
    name: str, file: str, size: int, total: int, count: int, limits: AdapterLimits
) -> None:
    """Refuse a file over the per-file limit, or a running total/count over the adapter limits.

    Raises:
        AdapterTooLargeError: naming the limit and the setting that raises it.
    """
    if size > limits.max_file_bytes:
        raise AdapterTooLargeError(
            f"adapter {name!r}: {file} has {size} bytes, over the limit of "
            f"{limits.max_file_bytes} (registry.limits.max_file_bytes)"
        )
    if total > limits.max_total_bytes:
        raise AdapterTooLargeError(
            f"adapter {name!r} has over {limits.max_total_bytes} bytes of files "
            "(registry.limits.max_total_bytes)"
        )
    if count > limits.max_files:
        raise AdapterTooLargeError(
            f"adapter {name!r} has over {limits.max_files} files (registry.limits.max_files); "
            "a PEFT folder needs only adapter_config.json and adapter_model.safetensors"
        )


def check_adapter_folder(
    folder: Path, *, name: str, base: BaseModelSpec, limits: AdapterLimits, description: str = ""
) -> CheckedAdapter:
    """Run every check on an adapter folder and describe it as a version.

    Args:
        folder: a PEFT LoRA folder (already copied where it will be served from).
        name: adapter name, for messages and the version.
        base: the base model the adapter must fit.
        limits: size and rank limits.
        description: stored on the version.

    Returns:
        The version (content-hashed) with its size and training card.

    Raises:
        AdapterError: the first problem found, and what to do about it.
    """
    if not folder.is_dir():
        raise AdapterError(f"adapter {name!r}: {folder} is not a folder")
    size = check_files(folder, limits, name=name)
    version = inspect_adapter(folder, name=name, base_model=base.name, description=description)
    config = read_adapter_config(folder)
    targets = _check_config(config, name=name, base=base, limits=limits)
    check_safetensors(folder / WEIGHTS_FILE, name=name, config=config, targets=targets, base=base)
    return CheckedAdapter(version=version, size_bytes=size, card=read_card(folder))


def _check_config(
    config: Mapping[str, Any], *, name: str, base: BaseModelSpec, limits: AdapterLimits
) -> tuple[str, ...]:
    rank = config.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise AdapterError(f"adapter {name!r}: {CONFIG_FILE} needs a positive integer `r`")
    ranks = [rank, *_rank_pattern(config, name).values()]
    if max(ranks) > limits.max_rank:
        raise AdapterError(
            f"adapter {name!r} has rank {max(ranks)}, over the engine's maximum of "
            f"{limits.max_rank} (registry.limits.max_rank); retrain with a smaller `r`"
        )
    if config.get("use_dora"):
        raise AdapterError(f"adapter {name!r} is a DoRA adapter; the engines serve plain LoRA")
    if config.get("modules_to_save"):
        raise AdapterError(
            f"adapter {name!r} saves whole modules ({config['modules_to_save']}); the engines "
            "serve LoRA weights only, so retrain without modules_to_save"
        )
    targets = config.get("target_modules")
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        raise AdapterError(
            f"adapter {name!r}: target_modules must be a list of module names, not {targets!r}"
        )
    unknown = sorted(t for t in targets if t.rsplit(".", 1)[-1] not in base.module_suffixes)
    if unknown:
        raise AdapterError(
            f"adapter {name!r} targets {', '.join(unknown)}, which {base.name} does not have; "
            f"it has {', '.join(sorted(base.module_suffixes))}"
        )
    return tuple(targets)


def _rank_pattern(config: Mapping[str, Any], name: str) -> dict[str, int]:
    pattern = config.get("rank_pattern") or {}
    if not isinstance(pattern, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pattern.values()
    ):
        raise AdapterError(f"adapter {name!r}: rank_pattern must map module names to ranks")
    return {str(k): int(v) for k, v in pattern.items()}


def _module_rank(module: str, default: int, pattern: Mapping[str, int]) -> int:
    for key, rank in pattern.items():
        if module == key or module.endswith("." + key):
            return rank
        try:
            if re.fullmatch(rf"(.*\.)?{key}", module):
                return rank
        except re.error:
            continue
    return default


def check_safetensors(
    path: Path,
    *,
    name: str,
    config: Mapping[str, Any],
    targets: Iterable[str],
    base: BaseModelSpec,
) -> None:
    """Parse a safetensors header and check it describes LoRA weights of the declared modules.

    Reads only the header (never the tensor data) and the file size.

    Raises:
        AdapterError: the header is malformed or names or shapes tensors that do not fit.
    """
    header = read_safetensors_header(path, name=name)
    targets = tuple(targets)
    rank = int(config["r"])
    pattern = _rank_pattern(config, name)
    pairs: dict[str, dict[str, list[int]]] = {}
    for tensor, spec in header.items():
        match = _TENSOR_NAME.match(tensor)
        if match is None:
            raise AdapterError(
                f"adapter {name!r}: tensor {tensor!r} is not a LoRA A/B weight "
                "(base_model.model.<module>.lora_A.weight); only LoRA weights can be served"
            )
        module = match["module"]
        if not any(module == t or module.endswith("." + t) for t in targets):
            raise AdapterError(
                f"adapter {name!r}: tensor {tensor!r} belongs to {module}, which is not in "
                f"target_modules ({', '.join(targets)})"
            )
        shape = spec["shape"]
        if len(shape) != 2:
            raise AdapterError(f"adapter {name!r}: tensor {tensor!r} has shape {shape}, not 2-D")
        pairs.setdefault(module, {})[match["ab"]] = shape
    for module, ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            missing = "B" if "A" in ab else "A"
            raise AdapterError(f"adapter {name!r}: {module} has no lora_{missing} weight")
        want = _module_rank(module, rank, pattern)
        (a_rank, a_in), (b_out, b_rank) = ab["A"], ab["B"]
        if a_rank != want or b_rank != want:
            raise AdapterError(
                f"adapter {name!r}: {module} has LoRA shapes A {ab['A']} and B {ab['B']}, "
                f"which do not match rank {want} in {CONFIG_FILE}"
            )
        sizes = base.module_shapes.get(module.rsplit(".", 1)[-1])
        if sizes is not None and (a_in, b_out) != sizes:
            raise AdapterError(
                f"adapter {name!r}: {module} maps {a_in} -> {b_out} features, but the module in "
                f"{base.name} maps {sizes[0]} -> {sizes[1]}; it was trained for another model"
            )
    if not pairs:
        raise AdapterError(f"adapter {name!r}: {WEIGHTS_FILE} holds no LoRA weights")


def read_safetensors_header(path: Path, *, name: str) -> dict[str, dict[str, Any]]:
    """Read and check a safetensors header: tensor name -> {dtype, shape, data_offsets}.

    Raises:
        AdapterError: not a well-formed safetensors file.
    """

    def bad(why: str) -> AdapterError:
        return AdapterError(f"adapter {name!r}: {path.name} is not a valid safetensors file: {why}")

    size = path.stat().st_size
    with path.open("rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise bad("it is shorter than its 8-byte header length")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise bad(f"its header length {length} is larger than the file or the limit")
        raw = fh.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad(f"its header is not JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise bad("its header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict):
        raise bad("__metadata__ is not an object")
    data_len = size - 8 - length
    spans: list[tuple[int, int]] = []
    for tensor, spec in header.items():
        if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor {tensor!r} needs exactly dtype, shape and data_offsets")
        dtype, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
        if dtype not in DTYPE_BYTES:
            raise bad(f"tensor {tensor!r} has dtype {dtype!r}; LoRA weights are floating point")
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            raise bad(f"tensor {tensor!r} has a malformed shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_count(o) for o in offsets)
            or offsets[0] > offsets[1]
        ):
            raise bad(f"tensor {tensor!r} has malformed data_offsets {offsets!r}")
        if offsets[1] - offsets[0] != math.prod(shape) * DTYPE_BYTES[dtype]:
            raise bad(f"tensor {tensor!r}: data_offsets do not match its shape and dtype")
        spans.append((offsets[0], offsets[1]))
    end = 0
    for begin, stop in sorted(spans):
        if begin != end:
            raise bad("tensor data overlaps or leaves gaps")
        end = stop
    if end != data_len:
        raise bad(f"the header describes {end} bytes of data but the file holds {data_len}")
    return header


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_card(folder: Path) -> dict[str, Any]:
    """The training card (`loramux-card.json`) of an adapter folder, or `{}` when absent.

    Raises:
        AdapterError: the card exists but is not a JSON object, or is over 1 MiB.
    """
    path = folder / CARD_FILE
    if not path.is_file():
        return {}
    if path.stat().st_size > MAX_CARD_BYTES:
        raise AdapterError(f"{CARD_FILE} is over {MAX_CARD_BYTES} bytes; it is metadata only")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise AdapterError(f"{CARD_FILE} is not readable JSON: {exc}") from exc
    if not isinstance(card, dict):
        raise AdapterError(f"{CARD_FILE} must hold a JSON object")
    return card

"""Adapter versions: immutable, named by the content of their files.

A version id is the sha256 of the adapter's config (canonical JSON) and its safetensors weights,
cut to 12 hex digits. Two folders with the same weights get the same id; any change of weights
or config gives a new one, so an engine never serves stale weights under a known name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loramux.errors import AdapterError
from loramux.types import AdapterRef

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
VERSION_LEN = 12


@dataclass(frozen=True)
class AdapterVersion:
    name: str
    version: str
    path: Path
    rank: int
    target_modules: tuple[str, ...]
    base_model: str
    description: str = ""

    @property
    def key(self) -> str:
        """`name@version`: the engine-facing identity of these exact weights."""
        return f"{self.name}@{self.version}"

    def ref(self) -> AdapterRef:
        return AdapterRef(key=self.key, path=self.path)


def content_version(folder: Path) -> str:
    """Version id of an adapter folder: hash of canonical config JSON plus weights."""
    config = read_adapter_config(folder)
    h = hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    with (folder / WEIGHTS_FILE).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:VERSION_LEN]


def read_adapter_config(folder: Path) -> dict[str, Any]:
    """Parse adapter_config.json.

    Raises:
        AdapterError: missing, unreadable or not a JSON object.
    """
    path = folder / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise AdapterError(f"{folder} is not a PEFT adapter folder: no {CONFIG_FILE}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise AdapterError(f"{path} must hold a JSON object")
    return data


def inspect_adapter(
    folder: Path, *, name: str, base_model: str, description: str = ""
) -> AdapterVersion:
    """Check an adapter folder and describe it as a version.

    Checks: a PEFT LoRA config, safetensors weights (pickle files are refused, never opened),
    and the base model it was trained for.

    Raises:
        AdapterError: what is wrong and what to do about it.
    """
    if not folder.is_dir():
        raise AdapterError(f"adapter {name!r}: {folder} is not a folder")
    config = read_adapter_config(folder)
    if config.get("peft_type") != "LORA":
        raise AdapterError(
            f"adapter {name!r}: peft_type is {config.get('peft_type')!r}; only LORA adapters "
            "can be served"
        )
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise AdapterError(
            f"adapter {name!r}: {', '.join(pickles)} would be loaded with pickle, which can run "
            "code; convert the weights to adapter_model.safetensors and remove them"
        )
    if not (folder / WEIGHTS_FILE).is_file():
        raise AdapterError(f"adapter {name!r}: {folder} has no {WEIGHTS_FILE}")
    trained_for = str(config.get("base_model_name_or_path") or "")
    if trained_for and Path(trained_for).name != base_model:
        raise AdapterError(
            f"adapter {name!r} was trained for {trained_for!r}, but this server runs "
            f"{base_model!r}; train it on {base_model}"
        )
    targets = config.get("target_modules") or []
    return AdapterVersion(
        name=name,
        version=content_version(folder),
        path=folder.resolve(),
        rank=int(config.get("r", 0)),
        target_modules=tuple(sorted(targets if isinstance(targets, list) else [str(targets)])),
        base_model=base_model,
        description=description,
    )

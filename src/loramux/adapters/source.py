"""Checks the folder a user asks to register, on the user's own path, before anything is staged.

Registration copies the folder into a staging area and checks the copy (`validation`); errors
found there would name a staging path the user never saw. `check_source` looks at the path as
given first and says, in terms of that path, what it is and what was expected: a relative path
(refused: the server's working directory is not the caller's), a missing path, a file, a folder
with links (a Hugging Face cache snapshot is one), a base model's own folder, or a folder without
`adapter_config.json` or `adapter_model.safetensors`. Nothing is read but names and the config.
"""

from __future__ import annotations

import json
from pathlib import Path

from loramux.adapters.version import CONFIG_FILE, PICKLE_SUFFIXES, WEIGHTS_FILE
from loramux.errors import AdapterError

EXPECTED = (
    f"a PEFT LoRA folder holding {CONFIG_FILE} and {WEIGHTS_FILE} "
    "(what `model.save_pretrained(folder)` writes for a PEFT model)"
)
BASE_MODEL_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json")


def check_source(source: Path, *, name: str) -> None:
    """Refuse a path that cannot be a PEFT LoRA folder, naming it and what it is.

    Args:
        source: the path the user gave (the API's `path`; the CLI makes its paths absolute
            against the current directory first).
        name: the adapter's name, for messages.

    Raises:
        AdapterError: `param` is `path`; the message names `source` as given.
    """

    def refuse(what: str) -> AdapterError:
        return AdapterError(f"adapter {name!r}: {source} {what}; expected {EXPECTED}", param="path")

    if not source.expanduser().is_absolute():
        raise AdapterError(
            f"adapter {name!r}: the path {str(source)!r} is relative; give the absolute path of "
            "the folder on the server (e.g. /srv/adapters/hr-v2), or upload an archive (the "
            "command line resolves relative paths against its current directory)",
            param="path",
        )
    folder = source.expanduser()
    if not folder.exists():
        raise refuse("is not a folder: it does not exist on the server")
    if not folder.is_dir():
        raise refuse("is a file, not a folder (a .zip or .tar.gz is uploaded as `file`)")
    names = sorted(p.name for p in folder.iterdir())
    links = [n for n in names if (folder / n).is_symlink()]
    if links:
        shown = ", ".join(links[:5]) + (", ..." if len(links) > 5 else "")
        raise refuse(
            f"holds links ({shown}), as a Hugging Face cache snapshot does; copy the real files "
            "into a plain folder and register that"
        )
    if CONFIG_FILE not in names:
        if "config.json" in names and any(n in names for n in BASE_MODEL_FILES[1:]):
            model = _model_type(folder / "config.json")
            raise refuse(
                f"is a full model folder ({model}: config.json and its weights), such as the base "
                "model itself, not a LoRA adapter"
            )
        present = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "") if names else "nothing"
        raise refuse(f"has no {CONFIG_FILE} (it holds {present})")
    if WEIGHTS_FILE not in names:
        pickles = [n for n in names if Path(n).suffix in PICKLE_SUFFIXES]
        if pickles:
            raise refuse(
                f"has {', '.join(pickles)} instead of {WEIGHTS_FILE}: pickle files can run code "
                "and are never opened; save the adapter with safe_serialization=True"
            )
        raise refuse(f"has {CONFIG_FILE} but no {WEIGHTS_FILE}")


def _model_type(config: Path) -> str:
    """`model_type` of a model's config.json, for messages ("a model" when unreadable)."""
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "a model"
    kind = data.get("model_type") if isinstance(data, dict) else None
    return f"a {kind} model" if isinstance(kind, str) else "a model"

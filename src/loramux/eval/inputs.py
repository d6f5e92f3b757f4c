"""What an evaluation reads: adapters named on the command line and held-out task data files.

An adapter is given as `NAME=FOLDER`, as a folder (named after it), or as the name of an entry in
the config's `adapters:` table. A task data file is `NAME=FILE` or a file; a file called
`test.jsonl` (or `validation`, `valid`, `dev`, `heldout`, `eval`, each optionally followed by
digits: `test2.jsonl`) is named after its folder, so `demo/data/hr/test.jsonl` and
`demo/data/hr/test2.jsonl` are the task `hr`. Lines are chat examples whose last turn is the
reference answer: `{"messages": [..., {"role": "assistant", ...}], "keys": ["27"]}`; `keys`
(strings the answer must contain) is optional.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loramux.errors import InvalidRequestError
from loramux.eval.lm import AdapterSpec
from loramux.serve.engine import check_adapter_files

_GENERIC_STEMS = {"test", "validation", "valid", "dev", "heldout", "eval"}
_ROLES = {"system", "user", "assistant"}


class EvalInputError(InvalidRequestError):
    """An adapter, data file or option of `loramux eval` is missing or malformed."""

    code = "invalid_eval_input"


@dataclass(frozen=True)
class TaskExample:
    prompt: tuple[dict[str, str], ...]
    """The conversation up to (not including) the reference answer."""
    reference: str
    keys: tuple[str, ...]

    def question(self) -> str:
        """The last user turn (for reports)."""
        return next((t["content"] for t in reversed(self.prompt) if t["role"] == "user"), "")


@dataclass(frozen=True)
class TaskSet:
    name: str
    path: Path
    examples: tuple[TaskExample, ...]

    @property
    def has_keys(self) -> bool:
        return all(e.keys for e in self.examples)


def _split(value: str) -> tuple[str | None, str]:
    name, sep, rest = value.partition("=")
    if sep and name and "/" not in name:
        return name.strip(), rest.strip()
    return None, value


def resolve_adapters(values: Sequence[str], known: Mapping[str, Path]) -> list[AdapterSpec]:
    """Turn `--adapter` values into named folders.

    Args:
        values: `NAME=FOLDER`, a folder, or a name from the config's `adapters:`.
        known: the config's adapters, name -> folder.

    Raises:
        EvalInputError: a value is neither an existing folder nor a known name, or two adapters
            share a name.
        AdapterError: a folder is not a safetensors PEFT adapter folder.
    """
    specs: list[AdapterSpec] = []
    for value in values:
        name, where = _split(value)
        path = Path(where).expanduser()
        if name is None and where in known and not path.exists():
            name, path = where, Path(known[where])
        if not path.is_dir():
            hint = f" or one of the config's adapters ({', '.join(known)})" if known else ""
            raise EvalInputError(
                f"adapter {value!r}: {path} is not a folder; give a PEFT adapter folder, "
                f"NAME=FOLDER{hint}",
                param="adapter",
            )
        name = name or path.resolve().name
        if name == "base":
            raise EvalInputError(
                f"adapter {value!r}: `base` names the base model's row; use NAME=FOLDER",
                param="adapter",
            )
        check_adapter_files(path)
        specs.append(AdapterSpec(name, path))
    _unique([s.name for s in specs], "adapter")
    return specs


def load_task_sets(values: Sequence[str], *, limit: int | None = None) -> list[TaskSet]:
    """Read `--data` values (`NAME=FILE` or FILE); `limit` keeps the first N examples of each.

    Raises:
        EvalInputError: a file is missing, unreadable or malformed (the message names the line),
            or two files get the same name.
    """
    sets = []
    for value in values:
        name, where = _split(value)
        path = Path(where).expanduser()
        if name is None:
            generic = path.stem.rstrip("0123456789") in _GENERIC_STEMS
            name = path.parent.name if generic else path.stem
        examples = load_task_examples(path)
        sets.append(TaskSet(name, path, examples[:limit] if limit else examples))
    _unique([s.name for s in sets], "data")
    return sets


def load_task_examples(path: Path) -> tuple[TaskExample, ...]:
    """Read one held-out JSONL file.

    Raises:
        EvalInputError: naming the file and line.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalInputError(f"cannot read task data {path}: {exc}", param="data") from exc
    examples = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            examples.append(_example(line, f"{path}, line {number}"))
    if not examples:
        raise EvalInputError(f"{path} holds no examples", param="data")
    return tuple(examples)


def _example(line: str, where: str) -> TaskExample:
    try:
        record: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        raise EvalInputError(f"{where}: not valid JSON ({exc.msg})", param="data") from exc
    messages = record.get("messages") if isinstance(record, dict) else None
    if (
        not isinstance(messages, list)
        or len(messages) < 2
        or not all(
            isinstance(t, dict) and t.get("role") in _ROLES and isinstance(t.get("content"), str)
            for t in messages
        )
        or messages[-1]["role"] != "assistant"
    ):
        raise EvalInputError(
            f'{where}: expected {{"messages": [...]}} with roles system/user/assistant, string '
            "contents, and the reference answer as the last (assistant) turn",
            param="data",
        )
    keys = record.get("keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        raise EvalInputError(f"{where}: `keys` must be a list of non-empty strings", param="data")
    prompt = tuple({"role": t["role"], "content": t["content"]} for t in messages[:-1])
    return TaskExample(prompt, messages[-1]["content"], tuple(keys))


def _unique(names: Sequence[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise EvalInputError(
                f"two --{what} values are both named {name!r}; name them with NAME=PATH",
                param=what,
            )
        seen.add(name)

"""Labelled routing data: JSONL files for fitting and evaluating routers.

One JSON object per line, either `{"text": ..., "label": ...}` or a conversation
`{"messages": [{"role", "content"}, ...], "label": ...}` (the last user turn is routed, earlier
user turns are its history). `label` is a route name or `"none"` (out of scope); `kind` is optional
(e.g. `in_scope`, `out_of_scope`, `followup`) and only used to break results down. Other keys are
ignored. A bad line raises `CalibrationDataError` naming the file and the line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from loramux.errors import CalibrationDataError
from loramux.router.head import NONE


@dataclass(frozen=True)
class LabelledItem:
    """One labelled request.

    Attributes:
        text: the last user turn.
        label: the right route, or `NONE`.
        kind: free-form category for breakdowns ("" when absent).
        history: earlier user turns, oldest first.
    """

    text: str
    label: str
    kind: str = ""
    history: tuple[str, ...] = ()


def load_labelled(path: Path, routes: Iterable[str] | None = None) -> list[LabelledItem]:
    """Read a labelled JSONL file.

    Args:
        path: the file.
        routes: known route names; when given, a label naming another route is an error.

    Returns:
        The items, in file order.

    Raises:
        CalibrationDataError: the file is missing or empty, or a line is not a valid item.
    """
    known = None if routes is None else {*routes, NONE}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CalibrationDataError(f"cannot read routing data {path}: {exc.strerror}") from exc
    items: list[LabelledItem] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CalibrationDataError(f"{where}: not valid JSON ({exc.msg})") from exc
        items.append(_parse(row, where, known))
    if not items:
        raise CalibrationDataError(
            f"{path} holds no items; expected JSON lines with text and label"
        )
    return items


def _parse(row: object, where: str, known: set[str] | None) -> LabelledItem:
    if not isinstance(row, dict):
        raise CalibrationDataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    label = row.get("label")
    if not isinstance(label, str) or not label:
        raise CalibrationDataError(
            f'{where}: missing "label" (a route name, or "none" for out-of-scope requests)'
        )
    if known is not None and label not in known:
        raise CalibrationDataError(
            f"{where}: label {label!r} is not a route; known: {', '.join(sorted(known))}"
        )
    kind = row.get("kind", "")
    kind = kind if isinstance(kind, str) else ""
    if "messages" in row:
        return _conversation(row["messages"], label, kind, where)
    text = row.get("text")
    if not isinstance(text, str) or not text.strip():
        raise CalibrationDataError(f'{where}: missing "text" (or "messages"), a non-empty string')
    return LabelledItem(text.strip(), label, kind)


def _conversation(messages: object, label: str, kind: str, where: str) -> LabelledItem:
    bad = CalibrationDataError(
        f'{where}: "messages" must be a list of {{"role", "content"}} objects with a user turn'
    )
    if not isinstance(messages, list):
        raise bad
    users: list[str] = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise bad
        if message.get("role") == "user":
            users.append(message["content"].strip())
    if not users or not users[-1]:
        raise bad
    return LabelledItem(users[-1], label, kind or "conversation", tuple(users[:-1]))

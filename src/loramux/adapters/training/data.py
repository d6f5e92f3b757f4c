"""Chat JSONL loading and tokenization with a loss mask on assistant tokens only.

Each line is `{"messages": [{"role": ..., "content": ...}, ...]}`. The text is rendered with the
base model's chat template; tokens of assistant turns (including their end-of-turn marker) get
labels, everything else gets -100 so it does not count in the loss.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loramux.errors import InvalidRequestError

IGNORE_INDEX = -100
ROLES = {"system", "user", "assistant"}


class TrainingDataError(InvalidRequestError):
    """A training data file is malformed; the message names the file and line."""

    code = "invalid_training_data"


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]


def load_chat_jsonl(path: Path) -> list[list[dict[str, str]]]:
    """Read chat examples; every example must contain at least one assistant turn.

    Raises:
        TrainingDataError: unreadable file, bad JSON, or a malformed line.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingDataError(f"cannot read training data {path}: {exc}") from exc
    examples = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TrainingDataError(f"{where}: not valid JSON ({exc.msg})") from exc
        messages = record.get("messages") if isinstance(record, dict) else None
        if not isinstance(messages, list) or not messages:
            raise TrainingDataError(
                f'{where}: expected {{"messages": [...]}} with at least one turn'
            )
        for turn in messages:
            if (
                not isinstance(turn, dict)
                or turn.get("role") not in ROLES
                or not isinstance(turn.get("content"), str)
            ):
                raise TrainingDataError(
                    f"{where}: each turn needs a role (system, user or assistant) and a string "
                    "content"
                )
        if not any(t["role"] == "assistant" for t in messages):
            raise TrainingDataError(f"{where}: no assistant turn to learn from")
        examples.append([{"role": t["role"], "content": t["content"]} for t in messages])
    if not examples:
        raise TrainingDataError(f"{path} holds no examples")
    return examples


def tokenize_chat(
    tokenizer: Any, messages: list[dict[str, str]], max_length: int
) -> TokenizedExample:
    """Tokenize one conversation; labels are set on assistant tokens only.

    The template is rendered for growing prefixes of the conversation; the tokens each assistant
    turn adds after the generation prompt are the ones the model must learn to produce.
    """
    ids: list[int] = []
    labels: list[int] = []
    for i, turn in enumerate(messages):
        if turn["role"] == "assistant":
            before = _render(tokenizer, messages[:i], generation_prompt=True)
            new_prompt = before[len(ids) :] if before[: len(ids)] == ids else before
            if new_prompt is before:
                ids, labels = [], []
            ids += new_prompt
            labels += [IGNORE_INDEX] * len(new_prompt)
        full = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        added = full[len(ids) :] if full[: len(ids)] == ids else full
        if added is full:
            ids, labels = [], []
        ids += added
        labels += added if turn["role"] == "assistant" else [IGNORE_INDEX] * len(added)
    return TokenizedExample(ids[:max_length], labels[:max_length])


def _render(
    tokenizer: Any, messages: list[dict[str, str]], *, generation_prompt: bool
) -> list[int]:
    if not messages:
        return []
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt
    )
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids

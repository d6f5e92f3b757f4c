"""The facts table that `augment` states in many forms, and the names a fact's topic goes by.

A fact is an id, a topic, the keys a correct answer contains, a canonical answer, and optional
aliases: other names employees use for the topic ("bike lease", "cycle to work scheme" for
"Bike leasing"). Two formats:

- markdown (demo/data/<task>/facts.md): a table `| id | topic | keys | canonical answer |` with
  the keys in backticks, optionally with a last column `| aliases |` holding the aliases
  `; `-separated (an empty cell: none). Without a header row the four columns are assumed.
- JSONL: one `{"id", "topic", "keys": [...], "answer", "aliases": [...]}` per line, `aliases`
  optional.

Malformed rows are refused with the file and line. An alias may not contain a key of its fact
(a question with it would give the answer away) nor name another fact of the table.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from loramux.adapters.training.data import TrainingDataError

MD_COLUMNS = ("id", "topic", "keys", "canonical answer")
ALIASES_COLUMN = "aliases"
JSONL_FIELDS = {"id", "topic", "keys", "answer", "aliases"}
_SEPARATOR_CELL = re.compile(r"^:?-{3,}:?$")


@dataclass(frozen=True)
class Fact:
    id: str
    topic: str
    keys: tuple[str, ...]
    answer: str
    aliases: tuple[str, ...] = ()
    """Other names of the topic, as they would appear mid-sentence."""


def load_facts(path: Path) -> dict[str, Fact]:
    """Read a facts table (markdown or JSONL, see the module docstring).

    Raises:
        TrainingDataError: unreadable file; a row without id, topic, keys or answer; an answer
            without its keys; a malformed aliases cell or list, or an alias that contains a key
            of its fact or names another fact.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingDataError(f"cannot read facts table {path}: {exc}") from exc
    rows = _jsonl_rows(path, text) if path.suffix == ".jsonl" else _markdown_rows(path, text)
    facts: dict[str, Fact] = {}
    owner: dict[str, str] = {}  # every topic name and alias (lower case) -> its fact id
    for where, fact in rows:
        _check(where, fact)
        for name in dict.fromkeys(n.lower() for n in (*topic_names(fact.topic), *fact.aliases)):
            other = owner.setdefault(name, fact.id)
            if other != fact.id:
                raise TrainingDataError(
                    f"{where}: {name!r} (a topic name or alias) names both {other} and "
                    f"{fact.id}; each name must belong to one fact"
                )
        facts[fact.id] = fact
    if not facts:
        raise TrainingDataError(f"{path} holds no facts")
    return facts


def topic_names(topic: str) -> list[str]:
    """The names a topic goes by, in lower case but for acronyms ("HR portal", "Office Wi-Fi"):
    "Onboarding / Welcome Day" is "onboarding / welcome day", "onboarding" and "welcome day"."""
    names = [topic] + ([part.strip() for part in topic.split("/")] if "/" in topic else [])
    out = []
    for name in names:
        words = [w if sum(c.isupper() for c in w) > 1 else w.lower() for w in name.split()]
        lowered = " ".join(words)
        if lowered and lowered not in out:
            out.append(lowered)
    return out


def fact_names(fact: Fact, *, aliases: bool) -> list[str]:
    """The topic's names, then (with `aliases`) the fact's aliases, each once."""
    names = topic_names(fact.topic)
    if aliases:
        seen = {n.lower() for n in names}
        for alias in fact.aliases:
            if alias.lower() not in seen:
                seen.add(alias.lower())
                names.append(alias)
    return names


def _jsonl_rows(path: Path, text: str) -> list[tuple[str, Fact]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            row = json.loads(line)
            unknown = sorted(set(row) - JSONL_FIELDS)
            aliases = row.get("aliases", [])
            fact = Fact(str(row["id"]), str(row["topic"]), tuple(row["keys"]), str(row["answer"]))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise TrainingDataError(
                f'{where}: expected {{"id", "topic", "keys": [...], "answer"}} ({exc})'
            ) from exc
        if unknown:
            raise TrainingDataError(
                f"{where}: unknown field(s) {', '.join(unknown)}; a fact has "
                f"{', '.join(sorted(JSONL_FIELDS))}"
            )
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise TrainingDataError(f'{where}: "aliases" must be a list of strings')
        rows.append((where, _with_aliases(where, fact, aliases)))
    return rows


def _markdown_rows(path: Path, text: str) -> list[tuple[str, Fact]]:
    rows = []
    has_aliases = False
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.startswith("|"):
            continue
        where = f"{path}, line {number}"
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == "id":
            columns = tuple(c.lower() for c in cells)
            if columns not in (MD_COLUMNS, (*MD_COLUMNS, ALIASES_COLUMN)):
                raise TrainingDataError(
                    f"{where}: the header must be `| {' | '.join(MD_COLUMNS)} |`, optionally "
                    f"with a last `| {ALIASES_COLUMN} |` column; got `{line.strip()}`"
                )
            has_aliases = len(columns) == len(MD_COLUMNS) + 1
            continue
        if all(_SEPARATOR_CELL.match(c) for c in cells):
            continue
        wanted = len(MD_COLUMNS) + has_aliases
        if len(cells) < wanted:
            raise TrainingDataError(
                f"{where}: {len(cells)} cell(s), a fact row needs {wanted} "
                f"(| {' | '.join(MD_COLUMNS)}{' | ' + ALIASES_COLUMN if has_aliases else ''} |)"
            )
        answer_cells = cells[3:-1] if has_aliases else cells[3:]
        keys = tuple(re.findall(r"`([^`]+)`", cells[2]))
        fact = Fact(cells[0], cells[1], keys, "|".join(answer_cells).strip())
        aliases = cells[-1].split(";") if has_aliases and cells[-1] else []
        rows.append((where, _with_aliases(where, fact, aliases)))
    return rows


def _with_aliases(where: str, fact: Fact, aliases: list[str]) -> Fact:
    cleaned = tuple(a.strip() for a in aliases)
    if any(not a for a in cleaned):
        raise TrainingDataError(
            f"{where}: an empty alias in {'; '.join(aliases)!r} (aliases are `; `-separated)"
        )
    return Fact(fact.id, fact.topic, fact.keys, fact.answer, tuple(dict.fromkeys(cleaned)))


def _check(where: str, fact: Fact) -> None:
    if not (fact.id and fact.topic and fact.keys and fact.answer):
        raise TrainingDataError(f"{where}: a fact needs an id, a topic, keys and an answer")
    missing = [k for k in fact.keys if k not in fact.answer]
    if missing:
        raise TrainingDataError(
            f"{where}: the answer of {fact.id} lacks its key(s) {', '.join(missing)}"
        )
    for alias in fact.aliases:
        leaked = [k for k in fact.keys if k.lower() in alias.lower()]
        if leaked:
            raise TrainingDataError(
                f"{where}: alias {alias!r} of {fact.id} contains its key {leaked[0]!r}; a "
                "question with it would give the answer away"
            )

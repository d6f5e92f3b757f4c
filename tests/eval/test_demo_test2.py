"""demo/data/<task>/test2.jsonl: the second held-out set, written from facts.md alone.

Each row's keys are its fact's keys, every fact is asked at least twice, no question gives its
answer away or repeats one of train.jsonl or test.jsonl, and at most a third of the questions
borrow a word of their fact's topic.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from loramux.eval.inputs import load_task_sets
from tests.conftest import REPO

TASKS = ("hr", "it", "finance")
DATA = REPO / "demo" / "data"
_FACT_ROW = re.compile(r"^\| (\w+) \| (.+?) \| (.+?) \| (.+) \|$")


def _facts(task: str) -> dict[str, tuple[str, list[str]]]:
    """facts.md as id -> (topic, keys)."""
    facts = {}
    for line in (DATA / task / "facts.md").read_text(encoding="utf-8").splitlines():
        match = _FACT_ROW.match(line)
        if match and match.group(1) != "id":
            facts[match.group(1)] = (match.group(2), re.findall(r"`([^`]+)`", match.group(3)))
    return facts


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _question(row: dict[str, Any]) -> str:
    return str(next(t["content"] for t in reversed(row["messages"]) if t["role"] == "user"))


@pytest.mark.parametrize("task", TASKS)
def test_every_row_carries_its_facts_keys_and_every_fact_is_asked_twice(task: str) -> None:
    facts = _facts(task)
    assert len(facts) == 15
    rows = _rows(DATA / task / "test2.jsonl")
    assert len(rows) == 40
    for row in rows:
        assert row["fact"] in facts, row
        assert row["keys"] == facts[row["fact"]][1], row
        assert [t["role"] for t in row["messages"]] == ["user", "assistant"], row
        reference = row["messages"][-1]["content"].lower()
        assert all(k.lower() in reference for k in row["keys"]), row
    asked = Counter(row["fact"] for row in rows)
    assert set(asked) == set(facts)
    assert min(asked.values()) >= 2, asked


@pytest.mark.parametrize("task", TASKS)
def test_questions_are_new_and_do_not_give_the_answer_away(task: str) -> None:
    rows = _rows(DATA / task / "test2.jsonl")
    questions = [_question(r) for r in rows]
    assert len({q.casefold() for q in questions}) == len(questions)
    for row, question in zip(rows, questions, strict=True):
        assert not [k for k in row["keys"] if k.lower() in question.lower()], question
    seen = {
        _question(r).strip().casefold()
        for name in ("train.jsonl", "test.jsonl")
        for r in _rows(DATA / task / name)
    }
    assert [q for q in questions if q.strip().casefold() in seen] == []


@pytest.mark.parametrize("task", TASKS)
def test_at_most_a_third_of_the_questions_borrow_a_topic_word(task: str) -> None:
    facts = _facts(task)
    rows = _rows(DATA / task / "test2.jsonl")
    borrowed = []
    for row in rows:
        topic = facts[row["fact"]][0].lower()
        # Stems of the topic's words of 4+ letters; the place name is needed to tell facts apart.
        stems = {w[:5] for w in re.findall(r"[a-z]+", topic) if len(w) >= 4 and w != "brennsby"}
        question = _question(row).lower()
        if any(re.search(rf"\b{stem}", question) for stem in stems):
            borrowed.append(question)
    assert len(borrowed) <= len(rows) // 3, borrowed


def test_test2_files_are_named_after_their_task_folder() -> None:
    sets = load_task_sets([str(DATA / t / "test2.jsonl") for t in TASKS], limit=2)
    assert [(s.name, len(s.examples)) for s in sets] == [(t, 2) for t in TASKS]
    assert all(s.has_keys for s in sets)

"""Retrieval over the demo handbook with the real MiniLM encoder, and the RAG prompt."""

from __future__ import annotations

from typing import Any

import pytest

from loramux.rag.knowledge_base import Passage
from loramux.rag.prompt import build_rag_messages, retrieval_query


@pytest.mark.parametrize(
    ("query", "source", "heading"),
    [
        ("How many vacation days do I get?", "hr-policies.md", "Vacation"),
        ("Where do visitors get their badge?", "security-badges.md", "Visitors"),
        ("How long is the probation period?", "hr-policies.md", "Probation"),
    ],
)
def test_retrieval_finds_the_right_passage(
    handbook_kb: Any, query: str, source: str, heading: str
) -> None:
    best = handbook_kb.retrieve(query, 3)[0]
    assert best.source == source
    assert heading in best.heading
    assert best.score == pytest.approx(handbook_kb.best_score(query))


def test_unrelated_question_scores_below_the_rag_threshold(handbook_kb: Any) -> None:
    assert handbook_kb.best_score("How do I make pancakes?") < 0.4
    assert handbook_kb.best_score("Where do I pick up a visitor badge?") >= 0.4


def test_rag_prompt_numbers_passages_and_lists_sources() -> None:
    passages = [
        Passage("You get 27 vacation days.", "hr-policies.md", "HR Policies > Vacation", 0.7),
        Passage("Unused days expire in March.", "hr-policies.md", "", 0.5),
    ]
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "How many vacation days?"},
    ]
    prompt = build_rag_messages(messages, passages)
    system = prompt.messages[0]
    assert system["role"] == "system"
    assert prompt.messages[1:] == messages[1:]
    assert system["content"].startswith("Be brief.")
    assert (
        "[1] hr-policies.md > HR Policies > Vacation\nYou get 27 vacation days."
        in system["content"]
    )
    assert "[2] hr-policies.md\nUnused days" in system["content"]
    assert "[1]" in system["content"].split("\n\n")[1]  # the instruction shows how to cite
    assert [s.to_dict()["index"] for s in prompt.sources] == [1, 2]
    assert prompt.sources[0].heading == "HR Policies > Vacation"


def test_retrieval_query_adds_the_previous_user_turn() -> None:
    messages = [
        {"role": "user", "content": "How long is probation?"},
        {"role": "assistant", "content": "Six months."},
        {"role": "user", "content": "Can it be extended?"},
    ]
    assert retrieval_query(messages) == "How long is probation? Can it be extended?"

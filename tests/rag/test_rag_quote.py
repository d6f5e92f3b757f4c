"""The quoted sentence that ends a RAG answer (`rag.quote`), with the real MiniLM and the demo
handbook, and the questions file `loramux eval rag` reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loramux.rag.knowledge_base import Passage
from loramux.rag.quote import best_quote, units
from tests.rag.conftest import HANDBOOK

QUESTIONS = HANDBOOK.parent / "data" / "rag" / "test.jsonl"


def test_units_split_sentences_list_items_and_table_rows() -> None:
    text = (
        "## Canteen\n\nThe canteen opens from 07:30 to 14:30. Breakfast is served\n"
        "until 10:00.\n\n- **Building A:** offices and the\n  main reception.\n"
        "| Site | Address |\n| --- | --- |\n| Tolvik hub | Ringvej 3 |\n"
    )
    assert units(text) == [
        "The canteen opens from 07:30 to 14:30.",
        "Breakfast is served until 10:00.",
        "Building A: offices and the main reception.",
        "Site | Address",
        "Tolvik hub | Ringvej 3",
    ]


def test_the_quote_is_the_sentence_with_the_fact(encoder: Any) -> None:
    passages = [
        Passage(
            "Dogs are not allowed in the canteen. The weekly menu is posted on Mondays.",
            "facilities.md",
            "Canteen",
            0.6,
            0,
            10,
        ),
        Passage(
            "The Brennsby canteen in Building B opens from 07:30 to 14:30.",
            "facilities.md",
            "Canteen",
            0.5,
            10,
            20,
        ),
    ]
    quote = best_quote("When does the Brennsby canteen open?", passages, encoder)
    assert quote is not None
    assert quote.index == 2
    assert quote.text == "The Brennsby canteen in Building B opens from 07:30 to 14:30."
    assert quote.render() == (
        '[2] facilities.md > Canteen: "The Brennsby canteen in Building B opens from '
        '07:30 to 14:30."'
    )
    assert best_quote("anything", [], encoder) is None


def test_every_key_of_the_rag_questions_is_in_its_handbook_file() -> None:
    rows = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    assert len(rows) >= 40
    for row in rows:
        assert row["key"] in (HANDBOOK / row["source"]).read_text(), row


def test_quotes_carry_most_keys_of_the_rag_questions(handbook_kb: Any, encoder: Any) -> None:
    """The quote alone (no model): the floor of what `kb.quote` gives an answer."""
    rows = [json.loads(line) for line in Path(QUESTIONS).read_text().splitlines() if line]
    right = 0
    for row in rows:
        quote = best_quote(row["question"], handbook_kb.retrieve(row["question"], 3), encoder)
        right += quote is not None and row["key"] in quote.text
    assert right / len(rows) >= 0.85

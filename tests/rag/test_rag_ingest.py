"""Reading, chunking and incremental ingest (with a tiny fake encoder: no model needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loramux.errors import KnowledgeBaseError
from loramux.rag.chunking import chunk_blocks
from loramux.rag.ingest import ingest
from loramux.rag.knowledge_base import KnowledgeBase
from loramux.rag.readers import html_to_text, read_markdown
from loramux.rag.store import current_dir
from tests.fakes import TinyEncoder

DOC = """# Handbook

Intro paragraph about the company.

## Vacation

You get 27 vacation days per year.
Unused days expire in March.

## Parking

Visitors park in lot B.
"""


def test_markdown_chunks_follow_headings_and_keep_offsets() -> None:
    chunks = chunk_blocks(read_markdown(DOC), max_words=150)
    assert [c.heading for c in chunks] == ["Handbook", "Handbook > Vacation", "Handbook > Parking"]
    for chunk in chunks:
        assert DOC[chunk.start : chunk.end] == chunk.text
    assert chunks[1].embed_text.startswith("Handbook > Vacation: You get 27")


def test_long_paragraph_is_split_under_max_words() -> None:
    text = "# Rules\n\n" + " ".join(f"Rule number {i} says something useful." for i in range(60))
    chunks = chunk_blocks(read_markdown(text), max_words=50)
    assert len(chunks) > 4
    assert all(len(c.text.split()) <= 50 for c in chunks)
    assert all(text[c.start : c.end] == c.text for c in chunks)


def test_html_headings_and_paragraphs_are_read_without_scripts() -> None:
    html = (
        "<html><head><title>x</title><script>var a=1;</script></head><body>"
        "<h1>Travel</h1><p>Book trains in <b>second</b> class.</p>"
        "<h2>Hotels</h2><ul><li>Up to 120 EUR</li><li>Breakfast included</li></ul></body></html>"
    )
    blocks = read_markdown(html_to_text(html))
    assert blocks[0].heading == "Travel"
    assert blocks[0].text == "Book trains in second class."
    assert blocks[1].heading == "Travel > Hotels"
    assert "Up to 120 EUR" in blocks[1].text
    assert all("var a" not in block.text for block in blocks)


def test_incremental_ingest_skips_unchanged_files_and_replaces_changed_ones(
    tmp_path: Path,
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text(DOC, encoding="utf-8")
    (docs / "b.txt").write_text("Printers are on every floor.\n\nColour printing needs a PIN.\n")
    (docs / "c.html").write_text("<h1>Canteen</h1><p>Open from 11:30 to 14:00.</p>")
    kb_dir = tmp_path / "kb"
    enc = TinyEncoder()

    first = ingest([docs], kb_dir, enc)
    assert sorted(first.added) == ["a.md", "b.txt", "c.html"]
    assert first.encoded == first.chunks

    second = ingest([docs], kb_dir, enc)
    assert sorted(second.unchanged) == ["a.md", "b.txt", "c.html"]
    assert second.encoded == 0
    assert second.chunks == first.chunks

    (docs / "b.txt").write_text("Printers are in the basement now.\n")
    (docs / "c.html").unlink()
    third = ingest([docs], kb_dir, enc)
    assert third.updated == ("b.txt",)
    assert third.removed == ("c.html",)
    assert third.encoded == 1

    kb = KnowledgeBase.load(kb_dir, enc)
    assert kb.sources == ["a.md", "b.txt"]
    assert kb.retrieve("printers basement", 1)[0].source == "b.txt"
    assert all("Canteen" not in p.text for p in kb.retrieve("canteen open", 5))


def test_prune_drops_files_not_named_and_old_generations_are_cleaned(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(DOC, encoding="utf-8")
    (tmp_path / "b.md").write_text("# B\n\nSomething else.\n", encoding="utf-8")
    kb_dir = tmp_path / "kb"
    enc = TinyEncoder()
    ingest([tmp_path / "a.md", tmp_path / "b.md"], kb_dir, enc)
    summary = ingest([tmp_path / "a.md"], kb_dir, enc, prune=True)
    assert summary.removed == ("b.md",)
    (tmp_path / "a.md").write_text(DOC + "\nMore text.\n", encoding="utf-8")
    ingest([tmp_path / "a.md"], kb_dir, enc)
    live = current_dir(kb_dir)
    assert live is not None
    assert live.name == "gen-000003"
    assert sorted(p.name for p in kb_dir.glob("gen-*")) == ["gen-000002", "gen-000003"]


def test_ingest_reports_progress_and_rejects_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(DOC, encoding="utf-8")
    seen: list[tuple[str, int, int]] = []
    ingest([tmp_path / "a.md"], tmp_path / "kb", TinyEncoder(), lambda *args: seen.append(args))
    assert seen == [("a.md", 1, 1)]
    with pytest.raises(KnowledgeBaseError, match="no such file"):
        ingest([tmp_path / "missing.md"], tmp_path / "kb", TinyEncoder())


def test_knowledge_base_built_with_another_encoder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(DOC, encoding="utf-8")
    ingest([tmp_path / "a.md"], tmp_path / "kb", TinyEncoder(name="tiny"))
    with pytest.raises(KnowledgeBaseError, match="built with encoder 'tiny'"):
        KnowledgeBase.load(tmp_path / "kb", TinyEncoder(name="other"))
    with pytest.raises(KnowledgeBaseError, match="built with encoder"):
        ingest([tmp_path / "a.md"], tmp_path / "kb", TinyEncoder(name="other"))


def test_empty_knowledge_base_retrieves_nothing(tmp_path: Path) -> None:
    kb = KnowledgeBase.load(tmp_path / "nothing", TinyEncoder())
    assert kb.retrieve("anything") == []
    assert kb.best_score("anything") == -1.0

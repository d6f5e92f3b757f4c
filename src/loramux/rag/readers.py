"""Document readers: a file in, its text as blocks (paragraphs under their heading path) out.

Markdown and plain text are split on blank lines, Markdown headings (`#`, `##`, ...) set the
heading path; HTML is read with the standard library's `html.parser` (`h1`-`h6` set headings,
block elements end paragraphs, `script`/`style` are skipped); PDF is read page by page with `pypdf`
when it is installed. Every block keeps its character offsets in the text the reader produced
(for Markdown and text files, offsets into the file itself).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from loramux.errors import KnowledgeBaseError

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_BLANK = re.compile(r"\n[ \t]*\n")


@dataclass(frozen=True)
class Block:
    """A paragraph (or list, or table) of a document.

    Attributes:
        text: the paragraph's text.
        heading: heading path, e.g. `HR Policies > Vacation` ("" before any heading).
        start: offset of the first character in the document text.
        end: offset after the last character.
    """

    text: str
    heading: str
    start: int
    end: int


def read_markdown(text: str) -> list[Block]:
    """Blocks of a Markdown (or plain text) document; headings set the heading path."""
    blocks: list[Block] = []
    path: list[tuple[int, str]] = []
    pos = 0
    for para_start, para_end in _paragraph_spans(text):
        pos = para_start
        lines = text[para_start:para_end].split("\n")
        body_start = pos
        body: list[str] = []
        for line in lines:
            match = _HEADING.match(line)
            if match:
                if body:
                    blocks.append(_block(body, path, body_start))
                    body = []
                level = len(match.group(1))
                path = [(lvl, title) for lvl, title in path if lvl < level]
                path.append((level, match.group(2).strip()))
                body_start = pos + len(line) + 1
            else:
                if not body:
                    body_start = pos
                body.append(line)
            pos += len(line) + 1
        if body:
            blocks.append(_block(body, path, body_start))
    return [block for block in blocks if block.text]


def _paragraph_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    start = 0
    for match in _BLANK.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def _block(lines: list[str], path: list[tuple[int, str]], start: int) -> Block:
    raw = "\n".join(lines)
    stripped = raw.strip()
    offset = start + (raw.find(stripped) if stripped else 0)
    heading = " > ".join(title for _, title in path)
    return Block(stripped, heading, offset, offset + len(stripped))


class _HtmlText(HTMLParser):
    """Collects headings and paragraphs of an HTML document as Markdown-like text."""

    _BLOCK = frozenset(
        {
            "p",
            "div",
            "li",
            "ul",
            "ol",
            "table",
            "tr",
            "section",
            "article",
            "br",
            "pre",
            "blockquote",
            "dd",
            "dt",
            "header",
            "footer",
            "main",
        }
    )
    _SKIP = frozenset({"script", "style", "noscript", "template", "head"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._heading = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._heading = int(tag[1])
            self.parts.append("\n\n" + "#" * self._heading + " ")
        elif tag in self._BLOCK:
            self.parts.append("\n\n" if tag != "li" else "\n- ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip = max(self._skip - 1, 0)
        elif re.fullmatch(r"h[1-6]", tag):
            self._heading = 0
            self.parts.append("\n\n")
        elif tag in self._BLOCK:
            self.parts.append("\n\n" if tag != "li" else "")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        text = re.sub(r"\s+", " ", data)
        if self._heading:
            text = text.replace("\n", " ")
        self.parts.append(text)


def html_to_text(html: str) -> str:
    """Markdown-like text of an HTML document (headings as `#` lines, paragraphs apart)."""
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n[ \t]+", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def pdf_to_text(path: Path) -> str:
    """Text of a PDF, one `# Page N` section per page.

    Raises:
        KnowledgeBaseError: `pypdf` is not installed, or the file cannot be read.
    """
    try:
        from pypdf import PdfReader
    except ImportError as exc:
        raise KnowledgeBaseError(
            f"cannot read {path}: PDF files need the `pypdf` package (pip install pypdf)"
        ) from exc
    try:
        reader = PdfReader(str(path))
        pages = [page.extract_text() or "" for page in reader.pages]
    except Exception as exc:  # pypdf raises many types on broken files
        raise KnowledgeBaseError(f"cannot read PDF {path}: {exc}") from exc
    return "\n\n".join(f"# Page {i}\n\n{text.strip()}" for i, text in enumerate(pages, 1))


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


READERS: dict[str, Callable[[Path], str]] = {
    ".md": _read_text,
    ".markdown": _read_text,
    ".txt": _read_text,
    ".html": lambda path: html_to_text(_read_text(path)),
    ".htm": lambda path: html_to_text(_read_text(path)),
    ".pdf": pdf_to_text,
}
"""File suffix -> function giving the document's (Markdown-like) text."""


def read_document(path: Path) -> tuple[str, list[Block]]:
    """The document's text and its blocks.

    Raises:
        KnowledgeBaseError: unsupported suffix or unreadable file.
    """
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise KnowledgeBaseError(
            f"cannot ingest {path}: unsupported file type; use one of {', '.join(sorted(READERS))}"
        )
    try:
        text = reader(path)
    except OSError as exc:
        raise KnowledgeBaseError(f"cannot read {path}: {exc.strerror}") from exc
    return text, read_markdown(text)

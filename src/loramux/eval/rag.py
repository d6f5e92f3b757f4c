"""`loramux eval rag`: do RAG answers keep the handbook's facts?

Each question of a JSONL file (`{"question", "key", "source"}`; demo/data/rag/test.jsonl has 46)
is answered the way the gateway answers a RAG request: the knowledge base's top passages in the
prompt (`rag.prompt`), the base model's greedy answer, and, with quoting on, the passage sentence
that answers it (`rag.quote`). A question is answered right when its key (the fact's number or
name) appears verbatim in the answer (key accuracy), and sourced when the answer's sources
include the file that holds the fact. Every answer mode is scored on the same retrievals and
the same generations, side by side.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loramux.errors import LoramuxError

MODES = ("generate", "quote", "generate+quote")
"""The model's answer alone (loramux before quoting), the quoted sentence alone, both (what
the gateway sends with `kb.quote: true`)."""


class RagEvalError(LoramuxError):
    status = 400
    type = "invalid_request_error"


@dataclass(frozen=True)
class RagItem:
    question: str
    key: str
    source: str


def load_items(path: Path, limit: int | None = None) -> list[RagItem]:
    """Read the questions file.

    Raises:
        RagEvalError: a missing file, or a line without question, key and source (named).
    """
    if not path.is_file():
        raise RagEvalError(f"no questions file at {path}")
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            items.append(RagItem(str(row["question"]), str(row["key"]), str(row["source"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise RagEvalError(
                f"{path}:{n}: each line must be a JSON object with question, key and source "
                f"({type(exc).__name__}: {exc})"
            ) from None
    if not items:
        raise RagEvalError(f"{path} has no questions")
    return items[:limit] if limit else items


@dataclass
class RagReport:
    questions: int
    top_k: int
    retrieval_recall: float
    """Share of questions whose key is in one of the retrieved passages (the ceiling)."""
    sourced: float
    """Share of answers whose sources include the file holding the fact."""
    key_accuracy: dict[str, float]
    """Per answer mode."""
    answers: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "questions": self.questions,
            "top_k": self.top_k,
            "retrieval_recall": round(self.retrieval_recall, 4),
            "sourced": round(self.sourced, 4),
            "key_accuracy": {m: round(v, 4) for m, v in self.key_accuracy.items()},
            "answers": self.answers,
        }

    def format_table(self) -> str:
        lines = [
            f"RAG faithfulness: {self.questions} questions, top {self.top_k} passages",
            f"  retrieval recall (key in a retrieved passage): {self.retrieval_recall:.3f}",
            f"  sourced (the fact's file among the sources):   {self.sourced:.3f}",
            "",
            f"  {'answer':<16} key accuracy",
        ]
        lines += [f"  {mode:<16} {acc:.3f}" for mode, acc in self.key_accuracy.items()]
        return "\n".join(lines)


def evaluate_rag(
    items: Sequence[RagItem],
    kb: Any,
    encoder: Any,
    answer: Callable[[list[list[dict[str, str]]]], list[str]],
    *,
    top_k: int,
) -> RagReport:
    """Score every mode of `MODES` on `items` (see the module docstring).

    Args:
        kb: the knowledge base (`rag.knowledge_base.KnowledgeBase`).
        encoder: the embedder (picks the quote).
        answer: greedy answers to chat prompts, in order.
    """
    from loramux.rag.prompt import build_rag_messages
    from loramux.rag.quote import best_quote

    prompts, quotes, retrieved, sourced = [], [], 0, 0
    for item in items:
        passages = kb.retrieve(item.question, top_k)
        retrieved += any(item.key in p.text for p in passages)
        sourced += any(p.source == item.source for p in passages)
        prompt = build_rag_messages([{"role": "user", "content": item.question}], passages)
        prompts.append(prompt.messages)
        quote = best_quote(item.question, passages, encoder)
        quotes.append(quote.render() if quote else "")
    generated = answer(prompts)
    texts = {
        "generate": generated,
        "quote": quotes,
        "generate+quote": [
            f"{g}\n\n{q}" if q else g for g, q in zip(generated, quotes, strict=True)
        ],
    }
    n = len(items)
    accuracy = {m: sum(i.key in t for i, t in zip(items, texts[m], strict=True)) / n for m in MODES}
    answers = [
        {
            "question": item.question,
            "key": item.key,
            "answer": generated[k],
            "quote": quotes[k],
            **{f"right_{m}": item.key in texts[m][k] for m in MODES},
        }
        for k, item in enumerate(items)
    ]
    return RagReport(n, top_k, retrieved / n, sourced / n, accuracy, answers)


def run_rag_eval(
    cfg: Any,
    questions: Path,
    *,
    top_k: int | None = None,
    limit: int | None = None,
    max_new_tokens: int = 64,
    device: str = "auto",
    out: Path | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> RagReport:
    """`loramux eval rag`: ingest `kb.sources` (into the configured knowledge base folder, as
    `loramux serve` does), answer every question with the base model, write `rag.json`."""
    from loramux.embed.encoder import make_encoder
    from loramux.eval.commands import RunOptions, _load, out_dir
    from loramux.eval.generation import generate_answers
    from loramux.fileio import atomic_write_text
    from loramux.models import ensure_embedder
    from loramux.rag.ingest import ingest
    from loramux.rag.knowledge_base import KnowledgeBase

    items = load_items(questions, limit)
    kc = cfg.kb
    if not kc.sources:
        raise RagEvalError("the config has no kb.sources to answer from")
    ensure_embedder(cfg.embedder)
    encoder = make_encoder(cfg.embedder.source, device="cpu", cache_size=0)
    kb_dir = kc.dir or cfg.paths.data_dir / "kb"
    progress(f"ingesting {len(kc.sources)} source(s) into {kb_dir}")
    ingest(kc.sources, kb_dir, encoder, chunk_words=kc.chunk_words, prune=True)
    kb = KnowledgeBase.load(kb_dir, encoder)
    options = RunOptions(out=out, device=device)
    lm = _load(cfg, [], options, progress)

    def answer(prompts: list[list[dict[str, str]]]) -> list[str]:
        return generate_answers(lm, None, prompts, max_new_tokens=max_new_tokens)

    report = evaluate_rag(items, kb, encoder, answer, top_k=top_k or kc.top_k)
    folder = out_dir(cfg, options, "rag")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "rag.json", json.dumps(report.to_dict(), indent=2))
    return report

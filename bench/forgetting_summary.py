"""Re-read a `loramux eval forgetting` JSON and compare averages with and without BoolQ.

  python bench/forgetting_summary.py docs/eval/forgetting.json

BoolQ is a yes/no task: a small model's score there mostly follows its prior for "yes" vs "no"
(the base SmolLM2 answers one way on almost every item and scores below the majority class),
so an adapter that merely shifts that prior moves the MMLU + ARC + BoolQ + HellaSwag average by
several points either way. This prints, from the saved per-item predictions, the general average
with and without BoolQ, each adapter against the base model, and each adapter against the same
adapter trained without the anti-forgetting options (`<name>-plain`), every difference with its
95% paired bootstrap interval (same items, same seed as the report).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from loramux.eval.benchmarks import GENERAL_AVERAGE  # noqa: E402
from loramux.eval.stats import paired_bootstrap  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    args = parser.parse_args()
    data = json.loads(args.report.read_text(encoding="utf-8"))
    preds = data["predictions"]
    seed = data["settings"]["seed"]
    benches = [b for b in GENERAL_AVERAGE if b in preds]
    without = [b for b in benches if b != "boolq"]

    def correct(model: str, bench: str) -> list[float]:
        gold = preds[bench]["gold"]
        return [float(p == g) for p, g in zip(preds[bench][model], gold, strict=True)]

    def diff(a: str, b: str, names: list[str]) -> str:
        d = paired_bootstrap(
            {n: correct(a, n) for n in names},
            {n: correct(b, n) for n in names},
            {n: GENERAL_AVERAGE[n] for n in names},
            seed=seed,
        )
        return f"{100 * d.diff:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}]"

    def mean(model: str, names: list[str]) -> float:
        w = {n: GENERAL_AVERAGE[n] for n in names}
        total = sum(w.values())
        return (
            sum(w[n] * 100 * sum(correct(model, n)) / len(correct(model, n)) for n in names) / total
        )

    models = [m for m in preds[benches[0]] if m not in ("ids", "gold")]
    print(f"benchmarks: {', '.join(benches)}; items: {data['settings']['items']}")
    print("| model | average | - base (95% CI) | average w/o BoolQ | - base (95% CI) |")
    print("|---|---|---|---|---|")
    for m in models:
        if m == "base":
            print(f"| base | {mean(m, benches):.1f} | | {mean(m, without):.1f} | |")
            continue
        print(
            f"| {m} | {mean(m, benches):.1f} | {diff('base', m, benches)} "
            f"| {mean(m, without):.1f} | {diff('base', m, without)} |"
        )
    pairs = [(m, f"{m}-plain") for m in models if f"{m}-plain" in models]
    if pairs:
        print("\n| adapter | with options - without (average) | (average w/o BoolQ) |")
        print("|---|---|---|")
        for a, plain in pairs:
            print(f"| {a} | {diff(plain, a, benches)} | {diff(plain, a, without)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

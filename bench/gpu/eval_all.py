"""The evaluation behind docs/evaluation.md, in one run (on the lent GPU, or here).

    python3 bench/gpu/eval_all.py --out OUT [--per-benchmark 3000] [--extra NAME=FOLDER ...]

Runs, through the same functions as `loramux eval`:
1. task: each adapter on its own department's held-out questions, vs the base model;
2. matrix: every adapter and the base model on every department's held-out questions;
3. forgetting (last, the longest): the base model, the three demo adapters (trained with replay,
   KL distillation, L2, early stopping) and the same three trained without them
   (demo/adapters/ablation), on the general benchmarks (MMLU, ARC-Easy/Challenge, BoolQ,
   HellaSwag), paired with the base model.
Writes forgetting/, task/, matrix/ (JSON + PNG) under --out and prints the tables.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from loramux.config import load_config  # noqa: E402
from loramux.eval.commands import (  # noqa: E402
    RunOptions,
    run_forgetting_eval,
    run_matrix_eval,
    run_task_eval,
)
from loramux.eval.forgetting import ForgettingSettings  # noqa: E402

TASKS = ("hr", "it", "finance")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--per-benchmark", type=int, default=3000)
    parser.add_argument("--limit", type=int, default=None, help="task items per department")
    parser.add_argument("--extra", action="append", default=[], help="more NAME=FOLDER adapters")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--no-ablation",
        action="store_true",
        help="leave out demo/adapters/ablation (the adapters trained without the options)",
    )
    parser.add_argument(
        "--skip", action="append", default=[], choices=["forgetting", "task", "matrix"]
    )
    args = parser.parse_args()

    cfg = load_config(REPO / "configs" / "default.yaml", environ={})
    demo = REPO / "demo" / "adapters"
    adapters = [f"{t}={demo / t}" for t in TASKS]
    plain = (
        [] if args.no_ablation else [f"{t}-plain={demo / 'ablation' / f'{t}-plain'}" for t in TASKS]
    )
    data = [f"{t}={REPO / 'demo' / 'data' / t / 'test.jsonl'}" for t in TASKS]

    def say(line: str) -> None:
        print(line, flush=True)

    every = tuple(adapters + plain + args.extra)
    if "task" not in args.skip:
        # Each adapter on its own department's questions (the ablations named after theirs).
        names = [a.split("=")[0] for a in every]
        task_data = [
            f"{n}={REPO / 'demo' / 'data' / n.split('-')[0] / 'test.jsonl'}"
            for n in names
            if n.split("-")[0] in TASKS
        ]
        options = RunOptions(adapters=every, out=args.out / "task", device=args.device)
        print(run_task_eval(cfg, options, task_data, limit=args.limit, progress=say).format_table())
    if "matrix" not in args.skip:
        options = RunOptions(adapters=tuple(adapters), out=args.out / "matrix", device=args.device)
        print(run_matrix_eval(cfg, options, data, limit=args.limit, progress=say).format_table())
    if "forgetting" not in args.skip:
        settings = ForgettingSettings(per_benchmark=args.per_benchmark)
        options = RunOptions(adapters=every, out=args.out / "forgetting", device=args.device)
        print(run_forgetting_eval(cfg, options, settings, progress=say).format_table(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

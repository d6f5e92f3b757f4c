"""Training speed on this machine: a 100-example adapter, with and without the anti-forgetting
options, measured side by side in one run; prints a table.

  python bench/bench_train.py                      # 100 hr examples, configs/train/hr.yaml recipe
  python bench/bench_train.py --examples 100 --epochs 5 --variant with

Each variant trains on the first N examples of the hr training data, through the same
`train(config)` as `loramux train`:
- with:    configs/train/hr.yaml as shipped (since issue 21: `augment` from those rows, LoRA on
           all linear layers, replay, cached KL distillation, L2 and early stopping);
- without: the previous recipe (LoRA r 8 on q_proj/v_proj) with all four anti-forgetting
           options off (configs/train/ablation/).
Reported: epochs run, optimizer steps, tokens seen (task + replay, padding excluded), wall time,
tokens/s and seconds per step. Goal (issue 5): a 100-example adapter in under 10 minutes on the
2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from loramux.adapters.training.sft import train  # noqa: E402
from loramux.config import load_train_config  # noqa: E402

GOAL_SECONDS = 600.0


def _config(variant: str, data: Path, out: Path, epochs: int | None) -> object:
    path = (
        REPO / "configs" / "train" / ("hr.yaml" if variant == "with" else "ablation/hr-plain.yaml")
    )
    overrides: dict[str, object] = {
        "data": {"train": str(data)},
        "output_dir": str(out / variant),
        "device": "cpu",
    }
    config = load_train_config(path, overrides=overrides)
    if epochs is not None:
        config = config.model_copy(
            update={"optim": config.optim.model_copy(update={"epochs": epochs})}
        )
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=None, help="default: the config's (12)")
    parser.add_argument("--variant", choices=["with", "without", "both"], default="both")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()

    import torch

    lines = (REPO / "demo" / "data" / "hr" / "train.jsonl").read_text(encoding="utf-8")
    rows = []
    with tempfile.TemporaryDirectory(prefix="loramux-bench-train-") as tmp:
        data = Path(tmp) / "train.jsonl"
        data.write_text("\n".join(lines.splitlines()[: args.examples]) + "\n", encoding="utf-8")
        variants = ["with", "without"] if args.variant == "both" else [args.variant]
        for variant in variants:
            config = _config(variant, data, Path(tmp), args.epochs)
            steps = 0

            def count(line: str) -> None:
                nonlocal steps
                steps += line.startswith("epoch ") and " step " in line

            started = time.perf_counter()
            summary = train(config, progress=count)  # type: ignore[arg-type]
            wall = time.perf_counter() - started
            rows.append(
                {
                    "variant": variant,
                    "examples": args.examples,
                    "replay": summary.replay_examples,
                    "epochs": summary.epochs_run,
                    "steps": steps,
                    "tokens": summary.tokens_seen,
                    "seconds": round(wall, 1),
                    "tokens_per_s": round(summary.tokens_seen / wall, 1),
                    "s_per_step": round(wall / max(1, steps), 2),
                }
            )
            print(json.dumps(rows[-1]), flush=True)

    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    print(
        "| variant | examples (+replay) | epochs | steps | tokens | wall s | tokens/s | s/step "
        "| < 10 min |"
    )
    print("|" + "---|" * 9)
    for r in rows:
        ok = "yes" if r["seconds"] < GOAL_SECONDS else "NO"
        print(
            f"| {r['variant']} anti-forgetting | {r['examples']} (+{r['replay']}) | {r['epochs']} "
            f"| {r['steps']} | {r['tokens']} | {r['seconds']} | {r['tokens_per_s']} "
            f"| {r['s_per_step']} | {ok} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

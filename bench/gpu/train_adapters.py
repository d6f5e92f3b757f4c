"""Train loramux adapters from their YAML configs on the lent GPU (or here, on the CPU).

    python3 bench/gpu/train_adapters.py configs/train/hr.yaml configs/train/ablation/hr-plain.yaml

Calls the same `train(config)` as `loramux train`, one config after the other, and prints one
summary line per adapter (epochs, best epoch, seconds, tokens/s, device). `--copy-to DIR` copies
each finished adapter folder there (how the GPU machine hands them back through $OUT).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from loramux.adapters.training.sft import train
from loramux.config import load_train_config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", type=Path)
    parser.add_argument("--copy-to", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    for path in args.configs:
        config = load_train_config(path)
        summary = train(config, progress=lambda line: None)
        row = {
            "config": str(path),
            "name": config.name,
            "epochs_run": summary.epochs_run,
            "best_epoch": summary.best_epoch,
            "seconds": summary.seconds,
            "tokens_per_second": summary.tokens_per_second,
            "device": summary.device,
            "final": summary.history[-1] if summary.history else {},
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.copy_to is not None:
            rel = config.output_dir.resolve().relative_to(Path.cwd().resolve())
            shutil.copytree(config.output_dir, args.copy_to / rel, dirs_exist_ok=True)
    print(f"trained {len(rows)} adapters", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

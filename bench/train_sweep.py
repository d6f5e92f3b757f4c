"""Sweep the training recipe on a small grid; choose on held-out training phrasings; print a table.

  python bench/train_sweep.py --task hr --lr 5e-4 --lr 1e-3              # on this CPU
  python bench/train_sweep.py --task hr --task it --task finance \\
      --rank 8 --rank 16 --rank 32 --lr 5e-4 --lr 1e-3 --lr 2e-3 --device cuda --test

Each grid point (rank x learning rate x examples per fact) trains `configs/train/<task>.yaml`
with those three values changed (LoRA alpha = 2 x rank), through the same `train(config)` as
`loramux train`. It is scored on the validation split the recipe itself carves: the
`augment.validation_phrasings` question phrasings per fact held out of the augmentation (greedy
answers, 48 new tokens, key accuracy = every key of the fact in the answer). The point with the
best validation key accuracy is chosen per task (ties: lower validation loss). test.jsonl is
never used for choosing: with `--test` it is scored for the chosen point only, with a 95%
bootstrap interval. Each run's adapter stays in `--out`; `--install` copies each task's chosen one
to its config's `output_dir` (demo/adapters/<task>) and says which YAML values to change when the
chosen point is not the shipped one (alpha goes with rank: 2 x r). The table and every answer go
to `<out>/sweep.json`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from loramux.adapters.training.augment import augment_from_config  # noqa: E402
from loramux.adapters.training.sft import train  # noqa: E402
from loramux.config import TrainConfig, load_train_config  # noqa: E402
from loramux.eval.answer_metrics import key_accuracy  # noqa: E402
from loramux.eval.generation import generate_answers  # noqa: E402
from loramux.eval.inputs import load_task_examples  # noqa: E402
from loramux.eval.lm import AdapterSpec, EvalModel  # noqa: E402
from loramux.models import ensure_base_model  # noqa: E402


def point_config(
    task: str, rank: int | None, lr: float | None, per_fact: int | None, args: Any
) -> TrainConfig:
    name = f"{task}-r{rank or 'cfg'}-lr{lr or 'cfg'}-pf{per_fact or 'cfg'}"
    config = load_train_config(
        REPO / "configs" / "train" / f"{task}.yaml",
        overrides={"output_dir": str((args.out / name).resolve()), "device": args.device},
    )
    lora = config.lora
    if rank is not None:
        lora = lora.model_copy(update={"r": rank, "alpha": 2 * rank})
    optim = config.optim
    if lr is not None:
        optim = optim.model_copy(update={"learning_rate": lr})
    if args.epochs is not None:
        optim = optim.model_copy(update={"epochs": args.epochs})
    augment = config.augment
    if per_fact is not None:
        augment = augment.model_copy(update={"per_fact": per_fact})
    return config.model_copy(update={"lora": lora, "optim": optim, "augment": augment})


def key_scores(
    config: TrainConfig, prompts: list[list[dict[str, str]]], keys: list[tuple[str, ...]]
) -> tuple[list[float], list[str]]:
    base_dir = ensure_base_model(config.model, config.cache_dir)
    lm = EvalModel.load(
        base_dir,
        [AdapterSpec(config.name, config.output_dir)],
        device=config.device,
        base_name=config.model.id,
    )
    answers = generate_answers(lm, config.name, prompts, max_new_tokens=48, batch_size=16)
    return [key_accuracy(a, "", k) for a, k in zip(answers, keys, strict=True)], answers


def interval(scores: list[float], seed: int = 0) -> tuple[float, float]:
    rng = random.Random(seed)
    n = len(scores)
    means = sorted(sum(rng.choices(scores, k=n)) / n for _ in range(10_000))
    return means[249], means[9749]


def install(task: str, row: dict[str, Any]) -> None:
    """Put the chosen adapter where its config ships it, and say if the YAML must change."""
    shipped = load_train_config(REPO / "configs" / "train" / f"{task}.yaml")
    target = shipped.output_dir
    staging = target.parent / f".{target.name}-sweep"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(row["adapter"], staging)
    old = target.parent / f".{target.name}-old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    values = {
        "lora.r": (shipped.lora.r, row["rank"]),
        "optim.learning_rate": (shipped.optim.learning_rate, row["lr"]),
        "augment.per_fact": (shipped.augment.per_fact, row["per_fact"]),
    }
    changed = [f"{k}: {new} (was {was})" for k, (was, new) in values.items() if was != new]
    note = f"; set in configs/train/{task}.yaml: {', '.join(changed)}" if changed else ""
    print(f"installed {row['adapter']} as {target}{note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", action="append", choices=["hr", "it", "finance"])
    parser.add_argument("--rank", action="append", type=int, help="default: the config's")
    parser.add_argument("--lr", action="append", type=float, help="default: the config's")
    parser.add_argument("--per-fact", action="append", type=int, help="default: the config's")
    parser.add_argument("--epochs", type=int, default=None, help="default: the config's")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    parser.add_argument("--out", type=Path, default=Path("sweep-out"))
    parser.add_argument("--test", action="store_true", help="score the chosen point on test.jsonl")
    parser.add_argument(
        "--install",
        action="store_true",
        help="copy each task's chosen adapter to its config's output_dir (demo/adapters/<task>)",
    )
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    chosen: dict[str, dict[str, Any]] = {}
    for task in args.task or ["hr"]:
        grid = itertools.product(args.rank or [None], args.lr or [None], args.per_fact or [None])
        for rank, lr, per_fact in grid:
            config = point_config(task, rank, lr, per_fact, args)
            a = config.augment
            data = augment_from_config(config)  # the sweep needs a recipe with `augment`
            started = time.perf_counter()

            def progress(line: str, started: float = started) -> None:
                if "=" in line or line.split(" step ")[-1].split("/")[0].endswith("0"):
                    print(f"  [{time.perf_counter() - started:6.0f} s] {line}", flush=True)

            summary = train(config, progress=progress)
            t0 = time.perf_counter()
            prompts = [c[:-1] for c in data.validation]
            scores, answers = key_scores(config, prompts, data.validation_keys)
            history = summary.history[summary.best_epoch - 1] if summary.best_epoch else {}
            row = {
                "task": task,
                "rank": config.lora.r,
                "lr": config.optim.learning_rate,
                "per_fact": a.per_fact,
                "train_examples": summary.train_examples,
                "epochs": f"{summary.best_epoch}/{summary.epochs_run}",
                "validation_loss": round(history.get("validation_loss", float("nan")), 4),
                "validation_key_accuracy": round(sum(scores) / len(scores), 3),
                "validation_items": len(scores),
                "train_seconds": summary.seconds,
                "eval_seconds": round(time.perf_counter() - t0, 1),
                "adapter": str(config.output_dir),
                "answers": answers,
            }
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "answers"}), flush=True)
            best = chosen.get(task)
            if best is None or (row["validation_key_accuracy"], -row["validation_loss"]) > (
                best["validation_key_accuracy"],
                -best["validation_loss"],
            ):
                chosen[task] = row
    header = (
        f"{'task':<8} {'rank':>4} {'lr':>8} {'per_fact':>8} {'examples':>8} {'epochs':>6} "
        f"{'val loss':>8} {'val key acc':>11} {'train s':>8}"
    )
    print(header)
    for r in rows:
        mark = " <- chosen" if chosen[r["task"]] is r else ""
        print(
            f"{r['task']:<8} {r['rank']:>4} {r['lr']:>8.1e} {r['per_fact']:>8} "
            f"{r['train_examples']:>8} {r['epochs']:>6} {r['validation_loss']:>8.4f} "
            f"{r['validation_key_accuracy']:>6.3f} ({r['validation_items']}) "
            f"{r['train_seconds']:>7.0f}{mark}"
        )
    if args.test:
        for task, row in chosen.items():
            config = point_config(task, row["rank"], row["lr"], row["per_fact"], args)
            examples = load_task_examples(REPO / "demo" / "data" / task / "test.jsonl")
            scores, answers = key_scores(
                config, [list(e.prompt) for e in examples], [e.keys for e in examples]
            )
            low, high = interval(scores)
            row["test_key_accuracy"] = round(sum(scores) / len(scores), 3)
            row["test_interval"] = [round(low, 3), round(high, 3)]
            row["test_answers"] = answers
            print(
                f"test {task} (chosen r {row['rank']}, lr {row['lr']:.1e}, per_fact "
                f"{row['per_fact']}): key accuracy {row['test_key_accuracy']:.3f} "
                f"[{low:.3f}, {high:.3f}] on {len(scores)} held-out questions"
            )
    if args.install:
        for task, row in chosen.items():
            install(task, row)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Sweep the training recipe on a small grid; choose on held-out training phrasings; print a table.

  python bench/train_sweep.py --task hr --lr 5e-4 --lr 1e-3              # on this CPU
  python bench/train_sweep.py --task hr --task it --task finance --jobs 12 \\
      --rank 8 --rank 16 --rank 32 --lr 5e-4 --lr 1e-3 --lr 2e-3 --device cuda --test

Each grid point (rank x learning rate x examples per fact x `--aliases on|off` x epochs) trains
`configs/train/<task>.yaml` with those values changed (LoRA alpha = 2 x rank), through the
same `train(config)` as `loramux train`. It is scored on the validation split the recipe itself
carves: the
`augment.validation_phrasings` question phrasings per fact held out of the augmentation (greedy
answers, 48 new tokens, key accuracy = every key of the fact in the answer). The point with the
best validation key accuracy is chosen per task (ties: lower validation loss). test.jsonl is
never used for choosing: with `--test` it is scored for the chosen point only, with a 95%
bootstrap interval, and so is test2.jsonl where a task has one (questions written from facts.md
alone). `--jobs N` trains N grid points side by side, each in its own process (on a GPU a
135M-parameter model leaves most of the card idle). Each run's adapter stays in `--out`;
`--install` copies each task's chosen one to its config's `output_dir` (demo/adapters/<task>;
with `--float16`, its weights stored in float16) and says which YAML values to change when the
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
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
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
    task: str,
    rank: int | None,
    lr: float | None,
    per_fact: int | None,
    aliases: bool | None,
    epochs: int | None,
    args: Any,
) -> TrainConfig:
    alias_tag = "cfg" if aliases is None else ("on" if aliases else "off")
    name = f"{task}-r{rank or 'cfg'}-lr{lr or 'cfg'}-pf{per_fact or 'cfg'}-al{alias_tag}"
    name += f"-ep{epochs}" if epochs is not None else ""
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
    if epochs is not None:
        optim = optim.model_copy(update={"epochs": epochs})
    augment = config.augment
    if per_fact is not None:
        augment = augment.model_copy(update={"per_fact": per_fact})
    if aliases is not None:
        augment = augment.model_copy(update={"aliases": aliases})
    return config.model_copy(update={"lora": lora, "optim": optim, "augment": augment})


def run_point(
    task: str,
    rank: int | None,
    lr: float | None,
    per_fact: int | None,
    aliases: bool | None,
    epochs: int | None,
    args: Any,
) -> dict[str, Any]:
    """Train one grid point and score it on its validation phrasings."""
    config = point_config(task, rank, lr, per_fact, aliases, epochs, args)
    a = config.augment
    data = augment_from_config(config)  # the sweep needs a recipe with `augment`
    started = time.perf_counter()

    def progress(line: str) -> None:
        if "=" in line or line.split(" step ")[-1].split("/")[0].endswith("0"):
            print(f"  [{config.name} {time.perf_counter() - started:6.0f} s] {line}", flush=True)

    summary = train(config, progress=progress)
    t0 = time.perf_counter()
    prompts = [c[:-1] for c in data.validation]
    ((scores, answers),) = key_scores(config, (prompts, data.validation_keys))
    history = summary.history[summary.best_epoch - 1] if summary.best_epoch else {}
    row = {
        "task": task,
        "rank": config.lora.r,
        "lr": config.optim.learning_rate,
        "per_fact": a.per_fact,
        "aliases": a.aliases,
        "max_epochs": config.optim.epochs,
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
    print(json.dumps({k: v for k, v in row.items() if k != "answers"}), flush=True)
    return row


def run_parallel(points: list[tuple[Any, ...]], args: Any) -> list[dict[str, Any]]:
    """Each grid point in its own process, `--jobs` at a time (a small model leaves a GPU mostly
    idle, so points run side by side); returns the rows in grid order."""
    args.out.mkdir(parents=True, exist_ok=True)

    def one(point: tuple[Any, ...]) -> dict[str, Any]:
        task, rank, lr, per_fact, aliases, epochs = point
        config = point_config(task, rank, lr, per_fact, aliases, epochs, args)
        a = config.augment
        resolved = (config.lora.r, config.optim.learning_rate, a.per_fact, a.aliases)
        resolved += (config.optim.epochs,)
        spec = ",".join(str(v) for v in (task, *resolved))
        config = point_config(task, *resolved, args)  # named as the worker names it
        command = [sys.executable, __file__, "--point", spec, "--device", args.device]
        command += ["--out", str(args.out)]
        subprocess.run(command, check=True)
        path = args.out / f"{config.output_dir.name}.row.json"
        return dict(json.loads(path.read_text(encoding="utf-8")))

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        return list(pool.map(one, points))


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2), encoding="utf-8")
    tmp.replace(path)


Questions = tuple[list[list[dict[str, str]]], list[tuple[str, ...]]]
"""Prompts and the keys each answer must contain."""


def key_scores(config: TrainConfig, *sets: Questions) -> list[tuple[list[float], list[str]]]:
    """Key accuracy and answers of the config's adapter on each set, the model loaded once."""
    base_dir = ensure_base_model(config.model, config.cache_dir)
    lm = EvalModel.load(
        base_dir,
        [AdapterSpec(config.name, config.output_dir)],
        device=config.device,
        base_name=config.model.id,
    )
    results = []
    for prompts, keys in sets:
        answers = generate_answers(lm, config.name, prompts, max_new_tokens=48, batch_size=16)
        results.append(
            ([key_accuracy(a, "", k) for a, k in zip(answers, keys, strict=True)], answers)
        )
    return results


def interval(scores: list[float], seed: int = 0) -> tuple[float, float]:
    rng = random.Random(seed)
    n = len(scores)
    means = sorted(sum(rng.choices(scores, k=n)) / n for _ in range(10_000))
    return means[249], means[9749]


def to_float16(folder: Path) -> None:
    """Store an adapter's weights in float16 (half the size; the shipped demo adapters gave the
    same answers as in float32 on every held-out question)."""
    import torch
    from safetensors.torch import load_file, save_file

    path = folder / "adapter_model.safetensors"
    tensors = {
        k: v.to(torch.float16) if v.is_floating_point() else v for k, v in load_file(path).items()
    }
    save_file(tensors, str(path), metadata={"format": "pt"})


def install(task: str, row: dict[str, Any], float16: bool = False) -> None:
    """Put the chosen adapter where its config ships it, and say if the YAML must change."""
    shipped = load_train_config(REPO / "configs" / "train" / f"{task}.yaml")
    target = shipped.output_dir
    staging = target.parent / f".{target.name}-sweep"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(row["adapter"], staging)
    if float16:
        to_float16(staging)
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
        "augment.aliases": (shipped.augment.aliases, row["aliases"]),
        "optim.epochs": (shipped.optim.epochs, row.get("max_epochs", shipped.optim.epochs)),
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
    parser.add_argument(
        "--aliases",
        action="append",
        choices=["on", "off"],
        help="augment.aliases: the facts' other names in the questions (default: the config's)",
    )
    parser.add_argument(
        "--epochs", action="append", type=int, help="most epochs (early stopping may stop sooner)"
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    parser.add_argument("--out", type=Path, default=Path("sweep-out"))
    parser.add_argument("--test", action="store_true", help="score the chosen point on test.jsonl")
    parser.add_argument(
        "--install",
        action="store_true",
        help="copy each task's chosen adapter to its config's output_dir (demo/adapters/<task>)",
    )
    parser.add_argument(
        "--float16", action="store_true", help="with --install: store the weights in float16"
    )
    parser.add_argument("--jobs", type=int, default=1, help="grid points trained side by side")
    parser.add_argument("--point", help=argparse.SUPPRESS)  # one worker: its grid values
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.aliases:
        args.aliases = [a == "on" for a in args.aliases]
    if args.point:
        task, rank, lr, per_fact, aliases, epochs = args.point.split(",")
        row = run_point(
            task, int(rank), float(lr), int(per_fact), aliases == "True", int(epochs), args
        )
        write_json(args.out / f"{Path(row['adapter']).name}.row.json", row)
        return 0
    points = [
        (task, *p)
        for task in args.task or ["hr"]
        for p in itertools.product(
            args.rank or [None],
            args.lr or [None],
            args.per_fact or [None],
            args.aliases or [None],
            args.epochs or [None],
        )
    ]
    if args.jobs > 1:
        rows = run_parallel(points, args)
    else:
        rows = [run_point(*p, args) for p in points]
    chosen: dict[str, dict[str, Any]] = {}
    for row in rows:
        best = chosen.get(row["task"])
        if best is None or (row["validation_key_accuracy"], -row["validation_loss"]) > (
            best["validation_key_accuracy"],
            -best["validation_loss"],
        ):
            chosen[row["task"]] = row
    header = (
        f"{'task':<8} {'rank':>4} {'lr':>8} {'per_fact':>8} {'aliases':>7} {'examples':>8} "
        f"{'epochs':>6} "
        f"{'val loss':>8} {'val key acc':>11} {'train s':>8}"
    )
    print(header)
    for r in rows:
        mark = " <- chosen" if chosen[r["task"]] is r else ""
        print(
            f"{r['task']:<8} {r['rank']:>4} {r['lr']:>8.1e} {r['per_fact']:>8} "
            f"{'on' if r['aliases'] else 'off':>7} "
            f"{r['train_examples']:>8} {r['epochs']:>6} {r['validation_loss']:>8.4f} "
            f"{r['validation_key_accuracy']:>6.3f} ({r['validation_items']}) "
            f"{r['train_seconds']:>7.0f}{mark}"
        )
    if args.test:
        for task, row in chosen.items():
            config = point_config(
                task,
                row["rank"],
                row["lr"],
                row["per_fact"],
                row["aliases"],
                row["max_epochs"],
                args,
            )
            splits = [  # test2.jsonl: written from facts.md alone
                (split, load_task_examples(path))
                for split in ("test", "test2")
                if (path := REPO / "demo" / "data" / task / f"{split}.jsonl").is_file()
            ]
            sets = [([list(e.prompt) for e in ex], [e.keys for e in ex]) for _, ex in splits]
            for (split, _), (scores, answers) in zip(
                splits, key_scores(config, *sets), strict=True
            ):
                low, high = interval(scores)
                row[f"{split}_key_accuracy"] = round(sum(scores) / len(scores), 3)
                row[f"{split}_interval"] = [round(low, 3), round(high, 3)]
                row[f"{split}_answers"] = answers
                print(
                    f"{split} {task} (chosen r {row['rank']}, lr {row['lr']:.1e}, per_fact "
                    f"{row['per_fact']}, epochs {row['max_epochs']}): "
                    f"key accuracy {row[f'{split}_key_accuracy']:.3f} "
                    f"[{low:.3f}, {high:.3f}] on {len(scores)} held-out questions"
                )
    if args.install:
        for task, row in chosen.items():
            install(task, row, float16=args.float16)
    write_json(args.out / "sweep.json", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

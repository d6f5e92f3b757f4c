"""`train(config)`: PEFT LoRA supervised fine-tuning of one task adapter on CPU or GPU.

The base model stays frozen; only LoRA weights learn. `augment` first states each training fact
in many forms (`augment.py`), with held-out phrasings as the validation split. Options against
forgetting, each switched in the YAML: replay of general examples, KL distillation towards the
frozen base model (the same model with the adapter disabled, so no second copy in memory; live or
from a cache of the base's top-k, `distill.py`), an L2 penalty on the LoRA update, and early
stopping on a validation split (the best epoch is kept). The output folder (PEFT files plus a
model card) is written to a temporary folder and renamed into place, so a crash never leaves
half an adapter.
"""

from __future__ import annotations

import json
import logging
import math
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loramux.adapters.training.augment import augment_from_config
from loramux.adapters.training.card import write_model_card
from loramux.adapters.training.data import (
    IGNORE_INDEX,
    TokenizedExample,
    load_chat_jsonl,
    tokenize_chat,
)
from loramux.adapters.training.distill import TeacherCache, live_kl
from loramux.config import TrainConfig
from loramux.errors import ConfigError
from loramux.fileio import sha256_file

logger = logging.getLogger(__name__)

DEFAULT_REPLAY = Path(__file__).resolve().parents[4] / "demo" / "data" / "general" / "replay.jsonl"


@dataclass
class TrainSummary:
    output_dir: Path
    epochs_run: int
    best_epoch: int
    train_examples: int
    validation_examples: int
    replay_examples: int
    tokens_seen: int
    seconds: float
    tokens_per_second: float
    history: list[dict[str, float]] = field(default_factory=list)
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["output_dir"] = str(self.output_dir)
        return data


def train(config: TrainConfig, *, progress: Callable[[str], None] | None = None) -> TrainSummary:
    """Train one LoRA adapter as `config` says and write it to `config.output_dir`.

    Args:
        config: the parsed training YAML.
        progress: called with a short status line after each optimizer step and epoch;
            None shows a tqdm bar with the loss.

    Returns:
        What happened: epochs, best epoch, losses per epoch, throughput.

    Raises:
        TrainingDataError: malformed data files.
        ConfigError: options that cannot work together (e.g. replay without data).
    """
    from loramux.models import ensure_base_model, set_offline

    set_offline()
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    model_dir = ensure_base_model(config.model, config.cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    task = load_chat_jsonl(config.data.train)
    augmented = None
    if config.augment.enabled:
        augmented = augment_from_config(config)
        task = augmented.train
    if config.data.validation is not None:
        validation = load_chat_jsonl(config.data.validation)
    elif augmented is not None:
        validation = augmented.validation
    elif config.early_stopping.enabled and config.early_stopping.validation_split > 0:
        rng.shuffle(task)
        n_val = max(1, round(len(task) * config.early_stopping.validation_split))
        validation, task = task[:n_val], task[n_val:]
    else:
        validation = []
    replay: list[list[dict[str, str]]] = []
    if config.replay.enabled:
        replay_path = config.replay.data or DEFAULT_REPLAY
        if not replay_path.is_file():
            raise ConfigError(f"`replay.data`: {replay_path} does not exist")
        pool = load_chat_jsonl(replay_path)
        rng.shuffle(pool)
        want = round(len(task) * config.replay.ratio)
        replay = [pool[i % len(pool)] for i in range(want)]

    max_len = config.optim.max_length
    train_set = [tokenize_chat(tokenizer, m, max_len) for m in task + replay]
    val_set = [tokenize_chat(tokenizer, m, max_len) for m in validation]
    distill_prompts = [tokenize_chat(tokenizer, m, max_len) for m in replay] if replay else []
    if config.distill.enabled and not distill_prompts:
        pool = load_chat_jsonl(config.replay.data or DEFAULT_REPLAY)
        distill_prompts = [tokenize_chat(tokenizer, m, max_len) for m in pool]

    device = _pick_device(config.device)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    lora = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=(tm if isinstance(tm := config.lora.target_modules, str) else list(tm)),
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(base, lora)
    except ValueError as exc:
        raise ConfigError(f"`lora.target_modules`: {exc}") from exc
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=config.optim.learning_rate, weight_decay=config.optim.weight_decay
    )
    bs, accum = config.optim.batch_size, config.optim.grad_accum
    steps_per_epoch = math.ceil(len(train_set) / (bs * accum))
    total_steps = steps_per_epoch * config.optim.epochs
    warmup = int(total_steps * config.optim.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(1, warmup)) * max(0.0, 1 - s / total_steps)
    )

    dbs = config.distill.batch_size or bs
    cache = None
    if config.distill.enabled and config.distill.cache_top_k > 0 and distill_prompts:
        cache = TeacherCache.build(
            model,
            distill_prompts,
            top_k=config.distill.cache_top_k,
            temperature=config.distill.temperature,
            pad_id=pad_id,
            batch_size=bs,
            device=device,
            collate=_collate,
            answer_logits=_answer_logits,
        )

    bar = None
    if progress is None:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, desc=f"train {config.name}", unit="step")

    def report(line: str) -> None:
        if progress is not None:
            progress(line)

    history: list[dict[str, float]] = []
    best_val = math.inf
    best_state: dict[str, Any] | None = None
    best_epoch = 0
    stale = 0
    tokens_seen = 0
    step = 0
    epochs_run = 0
    for epoch in range(1, config.optim.epochs + 1):
        epochs_run = epoch
        model.train()
        order = list(range(len(train_set)))
        rng.shuffle(order)
        losses: list[float] = []
        batches = [order[i : i + bs] for i in range(0, len(order), bs)]
        for b, index in enumerate(batches):
            ids, mask, labels = _collate([train_set[i] for i in index], pad_id, device)
            task_loss = _assistant_loss(model, ids, mask, labels)
            loss = task_loss
            if config.distill.enabled and distill_prompts and b % config.distill.every == 0:
                picked = rng.sample(range(len(distill_prompts)), min(dbs, len(distill_prompts)))
                if cache is not None:
                    kl = cache.kl(model, picked, pad_id, device, _collate, _answer_logits)
                else:
                    kl = live_kl(
                        model,
                        [distill_prompts[i] for i in picked],
                        pad_id,
                        config.distill.temperature,
                        device,
                        _collate,
                        _answer_logits,
                    )
                loss = loss + config.distill.weight * kl
            if config.l2.enabled:
                loss = loss + config.l2.weight * _lora_l2(model)
            (loss / accum).backward()
            tokens_seen += int(mask.sum())
            losses.append(float(task_loss.detach()))
            if (b + 1) % accum == 0 or b + 1 == len(batches):
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                if bar is not None:
                    bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.3f}")
                    bar.update(1)
                report(f"epoch {epoch} step {step}/{total_steps} loss {losses[-1]:.4f}")
        record = {"epoch": float(epoch), "train_loss": sum(losses) / len(losses)}
        if val_set:
            record["validation_loss"] = _evaluate(model, val_set, pad_id, bs, device)
        history.append(record)
        report(" ".join(f"{k}={v:.4f}" for k, v in record.items()))
        val = record.get("validation_loss", record["train_loss"])
        if val < best_val - 1e-4:
            best_val, best_epoch, stale = val, epoch, 0
            best_state = {
                k: v.detach().to("cpu", copy=True)
                for k, v in model.state_dict().items()
                if "lora_" in k
            }
        else:
            stale += 1
            if (
                config.early_stopping.enabled
                and val_set
                and stale >= config.early_stopping.patience
            ):
                logger.info("early stopping after epoch %d (best %d)", epoch, best_epoch)
                break
    if bar is not None:
        bar.close()
    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    model.to("cpu")

    seconds = time.perf_counter() - started
    summary = TrainSummary(
        output_dir=config.output_dir,
        epochs_run=epochs_run,
        best_epoch=best_epoch,
        train_examples=len(task),
        validation_examples=len(val_set),
        replay_examples=len(replay),
        tokens_seen=tokens_seen,
        seconds=round(seconds, 1),
        tokens_per_second=round(tokens_seen / seconds, 1),
        history=history,
        device=str(device),
    )
    _save(model, config, summary)
    return summary


def _pick_device(choice: str) -> Any:
    """The torch device for `device: auto|cpu|cuda`.

    Raises:
        ConfigError: `cuda` asked for where torch sees no GPU.
    """
    import torch

    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("`device: cuda`: torch sees no CUDA GPU here; use `auto` or `cpu`")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def _collate(
    batch: list[TokenizedExample], pad_id: int, device: Any = "cpu"
) -> tuple[Any, Any, Any]:
    """Right-pad a batch (training needs no left padding) and put it on `device`."""
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        mask[i, :n] = 1
        labels[i, :n] = torch.tensor(e.labels)
    return ids.to(device), mask.to(device), labels.to(device)


def _answer_logits(model: Any, ids: Any, mask: Any, labels: Any) -> tuple[Any, Any]:
    """Logits at the positions that predict a labelled (assistant) token, and those labels.

    The LM head (vocabulary 49k for SmolLM2) is applied only where the loss needs it, which
    makes a training step about twice as fast on CPU as computing logits for every position.
    """
    causal = model.get_base_model()
    hidden = causal.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    target = labels[:, 1:]
    keep = target != IGNORE_INDEX
    logits = causal.get_output_embeddings()(hidden[:, :-1][keep]).float()
    return logits, target[keep]


def _assistant_loss(model: Any, ids: Any, mask: Any, labels: Any) -> Any:
    import torch.nn.functional as F

    logits, target = _answer_logits(model, ids, mask, labels)
    return F.cross_entropy(logits, target)


def _lora_l2(model: Any) -> Any:
    """Squared norm of the LoRA update: sum over layers of ||B @ A||^2, cheap via the factors."""
    total = None
    for module in model.modules():
        if hasattr(module, "lora_A") and hasattr(module, "lora_B") and "default" in module.lora_A:
            a = module.lora_A["default"].weight
            b = module.lora_B["default"].weight
            term = ((b.T @ b) * (a @ a.T)).sum()  # trace(A^T B^T B A) = ||BA||_F^2
            total = term if total is None else total + term
    return total if total is not None else 0.0


def _evaluate(
    model: Any, data: list[TokenizedExample], pad_id: int, bs: int, device: Any = "cpu"
) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(data), bs):
            ids, mask, labels = _collate(data[i : i + bs], pad_id, device)
            n = int((labels[:, 1:] != IGNORE_INDEX).sum())
            total += float(_assistant_loss(model, ids, mask, labels)) * n
            count += n
    model.train()
    return total / max(1, count)


def _save(model: Any, config: TrainConfig, summary: TrainSummary) -> None:
    """Write the PEFT folder and model card atomically into `config.output_dir`."""
    out = config.output_dir
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as tmp:
        staging = Path(tmp) / "adapter"
        peft_config = model.peft_config["default"]
        # Record the served model id, not this machine's cache path.
        peft_config.base_model_name_or_path = config.model.id
        model.save_pretrained(staging, safe_serialization=True)
        data_hashes = {"train": sha256_file(config.data.train)}
        if config.data.validation is not None:
            data_hashes["validation"] = sha256_file(config.data.validation)
        if config.augment.enabled and config.augment.facts is not None:
            data_hashes["facts"] = sha256_file(config.augment.facts)
        if config.replay.enabled:
            data_hashes["replay"] = sha256_file(config.replay.data or DEFAULT_REPLAY)
        write_model_card(staging, config, summary.to_dict(), data_hashes)
        (staging / "training_summary.json").write_text(
            json.dumps(summary.to_dict(), indent=2), encoding="utf-8"
        )
        old = Path(tmp) / "old"
        if out.exists():
            out.rename(old)
        staging.rename(out)
    # Leaving the block deletes the temporary folder, and with it the previous adapter (`old`).

"""Model cards for trained adapters: what data, what config, what came out.

The card is a README.md (for people) plus `loramux-card.json` (for the registry), both in the
adapter folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loramux.config import TrainConfig

CARD_JSON = "loramux-card.json"


def write_model_card(
    folder: Path, config: TrainConfig, metrics: dict[str, Any], data_hashes: dict[str, str]
) -> None:
    """Write README.md and loramux-card.json into `folder`."""
    card = {
        "name": config.name,
        "description": config.description,
        "base_model": config.model.id,
        "data_sha256": data_hashes,
        "config": json.loads(config.model_dump_json()),
        "metrics": metrics,
    }
    (folder / CARD_JSON).write_text(json.dumps(card, indent=2, default=str), encoding="utf-8")
    modules = config.lora.target_modules
    modules_text = modules if isinstance(modules, str) else ", ".join(modules)
    augment = (
        f"Augmented: {config.augment.per_fact} examples per fact from {config.augment.facts.name}."
        if config.augment.enabled and config.augment.facts is not None
        else "Not augmented."
    )
    options = [
        name
        for name, on in (
            ("replay", config.replay.enabled),
            ("distillation", config.distill.enabled),
            ("L2", config.l2.enabled),
            ("early stopping", config.early_stopping.enabled),
        )
        if on
    ]
    history = "\n".join(
        "| "
        + " | ".join(f"{v:.4f}" if k != "epoch" else str(int(v)) for k, v in row.items())
        + " |"
        for row in metrics.get("history", [])
    )
    header = " | ".join(metrics["history"][0].keys()) if metrics.get("history") else ""
    text = f"""---
library_name: peft
base_model: {config.model.id}
tags: [lora, loramux]
---
# {config.name}

{config.description}

LoRA adapter (r={config.lora.r}, alpha={config.lora.alpha}, modules
{modules_text}) for {config.model.id}, trained with loramux.
{augment} Against forgetting: {", ".join(options) or "none"}.

- Training examples: {metrics["train_examples"]} (+{metrics["replay_examples"]} replay),
  validation: {metrics["validation_examples"]}
- Data sha256: {", ".join(f"{k} {v[:16]}" for k, v in data_hashes.items())}
- Epochs run: {metrics["epochs_run"]}, best epoch kept: {metrics["best_epoch"]}
- {metrics["tokens_seen"]} tokens in {metrics["seconds"]} s
  ({metrics["tokens_per_second"]} tokens/s)

| {header} |
|{"---|" * len(metrics["history"][0]) if metrics.get("history") else ""}
{history}
"""
    (folder / "README.md").write_text(text, encoding="utf-8")

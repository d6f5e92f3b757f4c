"""Small real things that tests build: the SmolLM2 base spec, PEFT LoRA folders with random
weights, three department routes, and the real embedded encoder (loaded once per process)."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from loramux.adapters.validation import spec_from_hf_config
from loramux.config import RouteSpec

SMOLLM2_CONFIG = {
    "model_type": "llama",
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
}
"""The shapes of SmolLM2-135M-Instruct's config.json that adapter checks read."""
SMOLLM2_SPEC = spec_from_hf_config(SMOLLM2_CONFIG, name="SmolLM2-135M-Instruct")
"""The base model as the registry sees it, without loading it."""
ADMIN_KEY_TAIL = "q7Vd2LxN9pR4tZ8mW1cB6hJ3kF5sY0gA"
"""32 random characters: the server refuses admin keys weaker than that (`load_config`)."""


def admin_key(label: str) -> str:
    """A test admin key strong enough for the server: `<label>-` and 32 random characters."""
    return f"{label}-{ADMIN_KEY_TAIL}"


def write_lora_folder(
    folder: Path,
    *,
    base_model: str = "SmolLM2-135M-Instruct",
    peft_type: str = "LORA",
    r: int = 8,
    seed: int = 0,
) -> Path:
    """A syntactically valid PEFT LoRA folder with random weights (not a trained adapter)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "peft_type": peft_type,
        "base_model_name_or_path": base_model,
        "r": r,
        "lora_alpha": 16,
        "target_modules": ["q_proj", "v_proj"],
        "task_type": "CAUSAL_LM",
    }
    (folder / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    rng = np.random.default_rng(seed)
    tensors = {
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": rng.standard_normal(
            (r, 576), dtype=np.float32
        ),
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": np.zeros(
            (576, r), dtype=np.float32
        ),
    }
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    return folder


def write_model_lora(
    folder: Path,
    model: Any,
    *,
    r: int = 8,
    alpha: int = 16,
    targets: Sequence[str] = ("q_proj", "v_proj"),
    seed: int = 0,
    scale: float = 0.02,
) -> Path:
    """A PEFT LoRA folder for every `targets` linear layer of a real `model` (random A and B,
    both non-zero, so the adapter changes the outputs); what the hf engine loads as trained."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "peft_type": "LORA",
        "base_model_name_or_path": "SmolLM2-135M-Instruct",
        "r": r,
        "lora_alpha": alpha,
        "target_modules": list(targets),
        "task_type": "CAUSAL_LM",
    }
    (folder / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in targets:
            n_out, n_in = module.weight.shape
            key = f"base_model.model.{name}"
            tensors[f"{key}.lora_A.weight"] = scale * rng.standard_normal((r, n_in), np.float32)
            tensors[f"{key}.lora_B.weight"] = scale * rng.standard_normal((n_out, r), np.float32)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    return folder


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

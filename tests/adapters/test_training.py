"""Training: assistant-only labels, clear data errors, and a real (tiny) PEFT training run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loramux.adapters.training.data import (
    IGNORE_INDEX,
    TrainingDataError,
    load_chat_jsonl,
    tokenize_chat,
)
from loramux.adapters.version import inspect_adapter
from loramux.config import load_train_config
from tests.conftest import REPO


@pytest.fixture(scope="module")
def tokenizer(base_model_dir: Path) -> object:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_model_dir)


@pytest.mark.slow
def test_only_assistant_tokens_carry_labels(tokenizer: object) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Q one"},
        {"role": "assistant", "content": "A one"},
        {"role": "user", "content": "Q two"},
        {"role": "assistant", "content": "A two"},
    ]
    ex = tokenize_chat(tokenizer, messages, max_length=512)
    labelled = [
        i for i, label in zip(ex.input_ids, ex.labels, strict=True) if label != IGNORE_INDEX
    ]
    text = tokenizer.decode(labelled)  # type: ignore[attr-defined]
    assert text == "A one<|im_end|>\nA two<|im_end|>\n"
    full = tokenizer.decode(ex.input_ids)  # type: ignore[attr-defined]
    assert full.startswith("<|im_start|>system\nBe brief.")


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("{not json", "line 2: not valid JSON"),
        ('{"text": "hi"}', 'line 2: expected {"messages"'),
        ('{"messages": [{"role": "robot", "content": "x"}]}', "line 2: each turn needs a role"),
        ('{"messages": [{"role": "user", "content": "x"}]}', "line 2: no assistant turn"),
    ],
)
def test_bad_training_lines_name_file_and_line(tmp_path: Path, line: str, words: str) -> None:
    good = json.dumps(
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    )
    f = tmp_path / "data.jsonl"
    f.write_text(good + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(TrainingDataError, match=words):
        load_chat_jsonl(f)


@pytest.mark.slow
def test_training_writes_a_servable_adapter_with_a_card(tmp_path: Path) -> None:
    from loramux.adapters.training import train

    rows = [
        json.loads(x) for x in (REPO / "demo/data/hr/train.jsonl").read_text().splitlines()[:12]
    ]
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps({"messages": r["messages"]}) for r in rows) + "\n")
    cfg_file = tmp_path / "t.yaml"
    cfg_file.write_text(
        f"name: tiny\ndata: {{train: {data}}}\noutput_dir: {tmp_path / 'out'}\n"
        "optim: {epochs: 2, batch_size: 4, learning_rate: 1.0e-3, max_length: 96}\n"
        f"replay: {{enabled: true, ratio: 0.25, data: {REPO / 'demo/data/general/replay.jsonl'}}}\n"
        "distill: {enabled: true, weight: 0.5}\nl2: {enabled: true}\n"
        "early_stopping: {enabled: true, patience: 1, validation_split: 0.2}\n",
        encoding="utf-8",
    )
    summary = train(load_train_config(cfg_file), progress=lambda line: None)
    out = tmp_path / "out"
    assert summary.train_examples == 10
    assert summary.validation_examples == 2
    assert summary.replay_examples == 2
    assert summary.history
    assert "validation_loss" in summary.history[0]
    version = inspect_adapter(out, name="tiny", base_model="SmolLM2-135M-Instruct")
    assert version.rank == 8
    assert 1_000_000 < (out / "adapter_model.safetensors").stat().st_size < 3_000_000
    card = json.loads((out / "loramux-card.json").read_text())
    assert card["base_model"] == "SmolLM2-135M-Instruct"
    assert len(card["data_sha256"]["train"]) == 64
    assert not list(tmp_path.glob(".out-*")), "no staging folder may be left behind"


@pytest.mark.slow
def test_augmented_all_linear_training_with_cached_kl(tmp_path: Path) -> None:
    from loramux.adapters.training import train

    cfg_file = tmp_path / "t.yaml"
    hr = REPO / "demo/data/hr"
    cfg_file.write_text(
        f"name: tiny\ndata: {{train: {hr / 'train.jsonl'}}}\noutput_dir: {tmp_path / 'out'}\n"
        f"augment: {{enabled: true, facts: {hr / 'facts.md'}, per_fact: 6, "
        "validation_phrasings: 1}\n"
        "lora: {r: 4, alpha: 8, target_modules: all-linear}\n"
        "optim: {epochs: 1, batch_size: 8, learning_rate: 1.0e-3, max_length: 96}\n"
        f"replay: {{enabled: true, ratio: 0.05, data: {REPO / 'demo/data/general/replay.jsonl'}}}\n"
        "distill: {enabled: true, cache_top_k: 8, every: 2, batch_size: 2}\nl2: {enabled: true}\n",
        encoding="utf-8",
    )
    summary = train(load_train_config(cfg_file), progress=lambda line: None)
    assert summary.train_examples >= 15 * 6  # at least every kept training row once
    assert summary.validation_examples == 15
    version = inspect_adapter(tmp_path / "out", name="tiny", base_model="SmolLM2-135M-Instruct")
    assert version.rank == 4
    peft = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= set(
        peft["target_modules"]
    )
    card = json.loads((tmp_path / "out" / "loramux-card.json").read_text())
    assert len(card["data_sha256"]["facts"]) == 64

"""The cached teacher's KL equals the live one (top-k = vocabulary), and a smaller k never
overstates it; on a tiny real Llama model with a LoRA adapter whose weights are not zero."""

from __future__ import annotations

from typing import Any

import pytest

from loramux.adapters.training.data import IGNORE_INDEX, TokenizedExample
from loramux.adapters.training.distill import TeacherCache, live_kl
from loramux.adapters.training.sft import _answer_logits, _collate

VOCAB = 64


@pytest.fixture(scope="module")
def model() -> Any:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    return get_peft_model(LlamaForCausalLM(config), lora).eval()


def _examples() -> list[TokenizedExample]:
    import random

    rng = random.Random(0)
    out = []
    for n in (7, 11, 9, 5):
        ids = [rng.randrange(VOCAB) for _ in range(n)]
        labels = [IGNORE_INDEX] * (n // 2) + ids[n // 2 :]
        out.append(TokenizedExample(ids, labels))
    return out


def _cache(model: Any, top_k: int, t: float) -> TeacherCache:
    return TeacherCache.build(
        model,
        _examples(),
        top_k=top_k,
        temperature=t,
        pad_id=0,
        batch_size=3,
        device="cpu",
        collate=_collate,
        answer_logits=_answer_logits,
    )


@pytest.mark.parametrize("t", [1.0, 2.0])
def test_cached_kl_with_the_whole_vocabulary_equals_the_live_kl(model: Any, t: float) -> None:
    import torch

    picked = [2, 0, 3]
    examples = _examples()
    live = live_kl(model, [examples[i] for i in picked], 0, t, "cpu", _collate, _answer_logits)
    cache = _cache(model, VOCAB, t)
    cached = cache.kl(model, picked, 0, "cpu", _collate, _answer_logits)
    assert float(live.detach()) > 1e-3, (
        "the adapter must change the outputs, or this proves nothing"
    )
    assert float(cached) == pytest.approx(float(live), rel=1e-4), (float(cached), float(live))
    # and the gradients that train the adapter are the same
    grads = []
    for value in (live_kl, None):
        model.zero_grad()
        if value is None:
            loss = cache.kl(model, picked, 0, "cpu", _collate, _answer_logits)
        else:
            loss = live_kl(
                model, [examples[i] for i in picked], 0, t, "cpu", _collate, _answer_logits
            )
        loss.backward()
        grads.append(
            torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        )
    assert torch.allclose(grads[0], grads[1], rtol=1e-3, atol=1e-6)


def test_top_k_with_one_bucket_for_the_rest_never_overstates_the_kl(model: Any) -> None:
    picked = [0, 1, 2, 3]
    examples = _examples()
    live = float(live_kl(model, examples, 0, 1.0, "cpu", _collate, _answer_logits))
    values = [
        float(_cache(model, k, 1.0).kl(model, picked, 0, "cpu", _collate, _answer_logits))
        for k in (4, 16, 48, VOCAB)
    ]
    # merging tokens into one bucket can only lower a KL divergence (data processing inequality)
    assert all(v <= live + 1e-6 for v in values)
    assert values[0] < values[-1]
    assert values[-1] == pytest.approx(live, rel=1e-4)

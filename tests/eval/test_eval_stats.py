"""Paired bootstrap intervals and the answer metrics of `eval task`."""

from __future__ import annotations

import pytest

from loramux.eval.answer_metrics import exact_match, key_accuracy, token_f1
from loramux.eval.stats import paired_bootstrap


def test_identical_predictions_give_zero_difference_and_a_zero_interval() -> None:
    scores = {"mmlu": [1.0, 0.0, 1.0, 1.0, 0.0], "boolq": [0.0, 1.0, 1.0]}
    diff = paired_bootstrap(scores, scores, {"mmlu": 0.5, "boolq": 0.5})
    assert diff.diff == 0
    assert (diff.low, diff.high) == (0, 0)


def test_a_model_right_everywhere_the_other_is_wrong_differs_by_one() -> None:
    diff = paired_bootstrap({"t": [0.0] * 20}, {"t": [1.0] * 20})
    assert (diff.a, diff.b, diff.diff, diff.low, diff.high) == (0, 1, 1, 1, 1)


def test_interval_is_seeded_contains_the_difference_and_narrows_with_items() -> None:
    a = {"t": [1.0, 0.0] * 50}
    b = {"t": [1.0, 1.0] * 25 + [1.0, 0.0] * 25}
    first = paired_bootstrap(a, b, seed=3)
    assert first == paired_bootstrap(a, b, seed=3)
    assert first.low <= first.diff <= first.high
    assert first.low > 0  # 25 of 100 items better, none worse
    more = paired_bootstrap({"t": a["t"] * 4}, {"t": b["t"] * 4}, seed=3)
    assert more.high - more.low < first.high - first.low


def test_weights_combine_benchmarks_and_missing_ones_count_zero() -> None:
    a = {"x": [0.0, 0.0], "y": [0.0, 0.0], "z": [1.0, 1.0]}
    b = {"x": [1.0, 1.0], "y": [0.0, 0.0], "z": [0.0, 0.0]}
    diff = paired_bootstrap(a, b, {"x": 0.25, "y": 0.75})
    assert diff.diff == pytest.approx(0.25)


def test_items_that_do_not_line_up_are_refused() -> None:
    with pytest.raises(ValueError, match="same non-empty items"):
        paired_bootstrap({"t": [1.0, 0.0]}, {"t": [1.0]})


@pytest.mark.parametrize(
    ("metric", "answer", "reference", "keys", "want"),
    [
        (key_accuracy, "You get 27 vacation days.", "", ["27"], 1.0),
        (key_accuracy, "Ask in HARBOR.", "", ["Harbor"], 1.0),
        (key_accuracy, "2 days from home", "", ["2 days", "Wednesday"], 0.0),
        (key_accuracy, "2 days, and Wednesday is team day", "", ["2 days", "Wednesday"], 1.0),
        (exact_match, "The VPN is FjordLink.", "the vpn is fjordlink", [], 1.0),
        (exact_match, "FjordLink", "The VPN is FjordLink.", [], 0.0),
        (token_f1, "the VPN is FjordLink", "The VPN is FjordLink.", [], 1.0),
        (token_f1, "FjordLink", "The VPN is FjordLink.", [], 0.5),  # p 1, r 1/3
        (token_f1, "nothing alike", "The VPN is FjordLink.", [], 0.0),
    ],
)
def test_answer_metrics(
    metric: object, answer: str, reference: str, keys: list[str], want: float
) -> None:
    assert metric(answer, reference, keys) == pytest.approx(want)  # type: ignore[operator]

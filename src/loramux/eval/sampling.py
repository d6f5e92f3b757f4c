"""Fixed-size stratified subsets, the same for every model and every run with the same seed.

The subset size is split over the strata (MMLU subjects; for the other benchmarks the index of the
right answer) in proportion to their sizes, by largest remainder, ties broken by stratum name.
Inside a stratum the items are shuffled by a generator seeded with (seed, benchmark, stratum), so
adding a benchmark or changing another's size never changes this one's items.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence

from loramux.eval.benchmarks import ChoiceItem


def allocate(sizes: dict[str, int], total: int) -> dict[str, int]:
    """Split `total` over strata in proportion to `sizes` (largest remainder), never more than
    a stratum holds."""
    available = sum(sizes.values())
    if total >= available:
        return dict(sizes)
    quotas = {name: total * size / available for name, size in sizes.items()}
    counts = {name: math.floor(q) for name, q in quotas.items()}
    left = total - sum(counts.values())
    order = sorted(sizes, key=lambda name: (-(quotas[name] - counts[name]), name))
    for name in order[:left]:
        counts[name] += 1
    return counts


def stratified_subset(items: Sequence[ChoiceItem], size: int, *, seed: int) -> list[ChoiceItem]:
    """Take `size` items (all of them when there are fewer), stratified by `item.stratum`.

    Args:
        items: one benchmark's items.
        size: how many to keep.
        seed: the same seed gives the same subset.

    Returns:
        The chosen items, in their original order.
    """
    strata: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        strata[item.stratum].append(index)
    counts = allocate({name: len(members) for name, members in strata.items()}, size)
    chosen: list[int] = []
    for name, members in strata.items():
        benchmark = items[members[0]].benchmark
        rng = random.Random(f"{seed}:{benchmark}:{name}")
        chosen += rng.sample(members, counts[name])
    return [items[i] for i in sorted(chosen)]

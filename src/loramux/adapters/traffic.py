"""Traffic splits between the versions of one adapter, and sticky assignment of users to them.

A split gives each version an integer weight; the weights sum to 100. A user falls in one of
100 buckets by a hash of (experiment id, user key), and the bucket falls in one version's range
of the cumulative weights. The same user therefore meets the same version for as long as the
split is unchanged; a new split gets a new experiment id and so reshuffles users once.
"""

from __future__ import annotations

import bisect
import hashlib
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from loramux.adapters.records import PINNED, VersionStatus
from loramux.adapters.version import AdapterVersion
from loramux.errors import AdapterError, AdapterNotFoundError

BUCKETS = 100
TOTAL_WEIGHT = 100


@dataclass(frozen=True)
class Assignment:
    """Which version serves a request, and under which experiment."""

    version: AdapterVersion
    experiment_id: str
    """The split's experiment id, or `PINNED` ("") when the request named the version."""

    @property
    def pinned(self) -> bool:
        return self.experiment_id == PINNED


@dataclass(frozen=True)
class TrafficSplit:
    """A validated split, ready for O(log n) picks."""

    experiment_id: str
    versions: tuple[str, ...]
    bounds: tuple[int, ...]
    """Cumulative weights: version i owns buckets [bounds[i-1], bounds[i])."""

    @classmethod
    def from_weights(cls, weights: Mapping[str, int], experiment_id: str) -> TrafficSplit:
        items = sorted((v, w) for v, w in weights.items() if w > 0)
        bounds: list[int] = []
        total = 0
        for _, weight in items:
            total += weight
            bounds.append(total)
        return cls(experiment_id, tuple(v for v, _ in items), tuple(bounds))

    def pick(self, bucket: int) -> str:
        """The version that owns `bucket` (0 <= bucket < 100)."""
        return self.versions[bisect.bisect_right(self.bounds, bucket)]


def user_bucket(user: str | None, experiment_id: str) -> int:
    """Sticky bucket of a user in an experiment; a random one when there is no user key."""
    if user is None:
        return random.randrange(BUCKETS)  # assignment, not security: no need for secrets
    digest = hashlib.blake2b(f"{experiment_id}\x00{user}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def new_experiment_id() -> str:
    """A fresh experiment id (12 hex digits)."""
    return uuid.uuid4().hex[:12]


def check_weights(
    name: str, weights: Mapping[str, object], statuses: Mapping[str, VersionStatus]
) -> dict[str, int]:
    """Check a requested split against the adapter's versions.

    Args:
        name: adapter name, for messages.
        weights: version -> weight as requested.
        statuses: version -> status of every registered version of the adapter.

    Returns:
        The split without zero weights, sorted by version.

    Raises:
        AdapterNotFoundError: a version that is not registered.
        AdapterError: a retired version, a weight that is not an integer in 0..100, or weights
            that do not sum to 100.
    """
    clean: dict[str, int] = {}
    for version, weight in sorted(weights.items()):
        if version not in statuses:
            known = ", ".join(sorted(statuses)) or "none"
            raise AdapterNotFoundError(
                f"adapter {name!r} has no version {version!r}; its versions are: {known}",
                param="versions",
            )
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 100:
            raise AdapterError(
                f"the weight of version {version!r} must be an integer from 0 to 100, "
                f"not {weight!r}",
                param="versions",
            )
        if weight and statuses[version] is VersionStatus.RETIRED:
            raise AdapterError(
                f"version {version!r} of adapter {name!r} is retired and cannot get traffic; "
                "register its files again to bring it back",
                param="versions",
            )
        if weight:
            clean[version] = weight
    total = sum(clean.values())
    if total != TOTAL_WEIGHT:
        raise AdapterError(
            f"the weights of adapter {name!r} sum to {total}; they must sum to {TOTAL_WEIGHT} "
            '(e.g. {"<main>": 80, "<challenger>": 20})',
            param="versions",
        )
    return clean

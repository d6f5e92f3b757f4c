"""Where an adapter version lives on a pool of vLLM replicas: rendezvous hashing and hotness.

Pure functions and one small counter, no I/O, so every rule here is testable on its own and
two gateways given the same replica URLs compute the same answer without talking:

- `rank(key, urls)`: highest-random-weight (rendezvous) hashing. Each (replica URL, version key)
  pair gets a score from a stable hash; a version's replicas, in order of preference, are the
  URLs sorted by score. Dropping a dead replica from `urls` moves only the versions it held
  (each to the next URL of its own ranking), and adding it back moves them home again.
- `replicas_wanted(share, k, live)`: how many of the ranking's first replicas hold a version:
  `max(k, ceil(share * live))`, capped by the live replicas. A version with more than 1/N of
  the recent traffic gets a second replica, more than 2/N a third, so no holder carries much
  more than 1/N of the load on account of one version.
- `TrafficShare`: each version's share of the last `window` requests.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, deque
from collections.abc import Sequence


def score(url: str, key: str) -> int:
    """The rendezvous weight of one replica for one version (stable across processes)."""
    digest = hashlib.blake2b(f"{url}\n{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rank(key: str, urls: Sequence[str]) -> list[str]:
    """The replica URLs in the order a version prefers them (best first).

    Args:
        key: the version's key (`name@version`).
        urls: the replicas to choose from (dead ones left out by the caller).

    Returns:
        `urls` sorted by descending rendezvous score; ties (never seen in practice) by URL.
    """
    return sorted(urls, key=lambda url: (-score(url, key), url))


def replicas_wanted(share: float, k: int | None, live: int) -> int:
    """How many replicas should hold a version.

    Args:
        share: the version's part of recent requests (0 to 1).
        k: `engine.remote.replicas_per_adapter`, None meaning every replica.
        live: replicas in rotation.

    Returns:
        `max(k, ceil(share * live))` capped by `live` (at least 1 when any replica is live).
    """
    if live <= 0:
        return 0
    if k is None:
        return live
    # A small epsilon so that a share of exactly 1/N does not ask for a second replica.
    hot = math.ceil(share * live - 1e-9)
    return max(1, min(live, max(k, hot)))


class TrafficShare:
    """Each version's share of the last `window` requests that named one."""

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError("the traffic window must hold at least one request")
        self.window = window
        self._recent: deque[str] = deque()
        self._counts: Counter[str] = Counter()

    def record(self, key: str) -> None:
        """Count one request for `key`, forgetting the oldest past the window."""
        self._recent.append(key)
        self._counts[key] += 1
        if len(self._recent) > self.window:
            old = self._recent.popleft()
            self._counts[old] -= 1
            if not self._counts[old]:
                del self._counts[old]

    def share(self, key: str) -> float:
        """`key`'s requests over the window's size (not over the requests seen so far, so that
        the first requests after a start do not make their versions look hot)."""
        return self._counts[key] / self.window

"""Per-key rate limits: requests per minute and tokens per minute, as token buckets in memory.

Each limit is a bucket that holds at most one minute's allowance and refills continuously
(`limit / 60` per second), so a key can burst up to its limit and then runs at its rate.

Tokens are charged in two steps, because the real count is known only at the end: when a
request is admitted, an estimate (prompt characters / 4, plus `max_tokens` or the server's
default) is taken from the bucket; when it finishes, the charge is settled to the real prompt +
completion tokens (the difference is given back, or taken, which may leave the bucket below
zero: the next request then waits). A request that fails before generating gives its estimate
back. An estimate larger than the whole allowance takes a full bucket, so a large request is
slow, never impossible.

Buckets live in the process: with several server processes, each enforces the limits alone,
unless something shares what each consumed (`fleet_limits.FleetLimits`, `auth.limits_scope:
fleet`): `on_use` reports this process's final consumption (a request when it is counted, its
real tokens when its charge is settled) and `absorb` takes other processes' from the buckets.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from loramux.errors import RateLimitError


@dataclass(frozen=True)
class Limits:
    """A key's allowance per minute; None: no limit."""

    rpm: int | None = None
    tpm: int | None = None

    @property
    def unlimited(self) -> bool:
        return self.rpm is None and self.tpm is None


class TokenBucket:
    """Holds up to `capacity`, refilled at `capacity / 60` per second. Not thread-safe alone."""

    def __init__(self, capacity: int, now: float) -> None:
        self.capacity = capacity
        self.level = float(capacity)
        self.updated = now

    @property
    def rate(self) -> float:
        return self.capacity / 60.0

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` is in the bucket (0: now). Call `refill` first."""
        return max(0.0, (amount - self.level) / self.rate)

    def take(self, amount: float) -> None:
        self.level -= amount

    def give(self, amount: float) -> None:
        self.level = min(self.capacity, self.level + amount)


class TokenCharge:
    """Tokens taken for one request, to be settled once with the real count."""

    def __init__(self, limiter: RateLimiter, key: str, estimate: int) -> None:
        self._limiter = limiter
        self._key = key
        self.estimate = estimate
        self.settled = False

    def settle(self, actual_tokens: int) -> None:
        """Replace the estimate by the real prompt + completion tokens (once; later calls do
        nothing)."""
        if self.settled:
            return
        self.settled = True
        self._limiter.adjust(self._key, actual_tokens - self.estimate)
        self._limiter.used(self._key, 0, actual_tokens)


class RateLimiter:
    """Token buckets per key id."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._requests: dict[str, TokenBucket] = {}
        self._tokens: dict[str, TokenBucket] = {}
        self._debt: dict[tuple[str, str], tuple[float, float]] = {}
        self._lock = threading.Lock()
        self.on_use: Callable[[str, int, int], None] | None = None
        """Called with (key, requests, tokens) this process consumed, when set."""

    def used(self, key: str, requests: int, tokens: int) -> None:
        """Report final consumption to `on_use` (nothing when it is not set)."""
        if self.on_use is not None and (requests or tokens):
            self.on_use(key, requests, tokens)

    def absorb(self, key: str, requests: int, tokens: int) -> None:
        """Take what another process consumed from this key's buckets (which may go below
        zero; they refill as usual). A key without a bucket here yet owes it to the bucket it
        gets, less what would have refilled meanwhile."""
        now = self.clock()
        with self._lock:
            for kind, buckets, amount in (
                ("r", self._requests, requests),
                ("t", self._tokens, tokens),
            ):
                if amount <= 0:
                    continue
                bucket = buckets.get(key)
                if bucket is not None:
                    bucket.refill(now)
                    bucket.take(amount)
                else:
                    if len(self._debt) >= 10_000:  # keys this process never serves
                        self._debt.clear()
                    owed, _ = self._debt.get((key, kind), (0.0, now))
                    self._debt[(key, kind)] = (owed + amount, now)

    def count_request(self, key: str, limits: Limits) -> None:
        """Take one request from the key's per-minute allowance.

        Raises:
            RateLimitError: none is left (`retry_after_s` says when one will be).
        """
        if limits.rpm is None:
            return
        with self._lock:
            bucket = self._bucket(self._requests, key, limits.rpm)
            wait = bucket.wait_for(1)
            if wait > 0:
                raise RateLimitError(
                    f"rate limit reached for requests: this API key may send {limits.rpm} "
                    f"requests per minute; retry in {_seconds(wait)} s",
                    retry_after_s=_seconds(wait),
                    limit="requests",
                )
            bucket.take(1)
        self.used(key, 1, 0)

    def charge_tokens(self, key: str, limits: Limits, estimate: int) -> TokenCharge | None:
        """Take an estimate of a request's tokens; settle the returned charge when it ends.

        Returns:
            The charge, or None when the key has no token limit.

        Raises:
            RateLimitError: not enough tokens are left (`retry_after_s` says when they will be).
        """
        if limits.tpm is None:
            return None
        estimate = min(max(estimate, 1), limits.tpm)
        with self._lock:
            bucket = self._bucket(self._tokens, key, limits.tpm)
            wait = bucket.wait_for(estimate)
            if wait > 0:
                raise RateLimitError(
                    f"rate limit reached for tokens: this API key may use {limits.tpm} tokens "
                    f"per minute and this request needs about {estimate}; retry in "
                    f"{_seconds(wait)} s, or ask for fewer max_tokens",
                    retry_after_s=_seconds(wait),
                    limit="tokens",
                )
            bucket.take(estimate)
        return TokenCharge(self, key, estimate)

    def adjust(self, key: str, extra_tokens: int) -> None:
        """Take `extra_tokens` more from the key's token bucket (negative: give back)."""
        with self._lock:
            bucket = self._tokens.get(key)
            if bucket is None:
                return
            bucket.refill(self.clock())
            if extra_tokens >= 0:
                bucket.take(extra_tokens)
            else:
                bucket.give(-extra_tokens)

    def _bucket(self, buckets: dict[str, TokenBucket], key: str, capacity: int) -> TokenBucket:
        now = self.clock()
        bucket = buckets.get(key)
        if bucket is None or bucket.capacity != capacity:
            bucket = buckets[key] = TokenBucket(capacity, now)
            kind = "r" if buckets is self._requests else "t"
            owed, since = self._debt.pop((key, kind), (0.0, now))
            bucket.take(max(0.0, owed - (now - since) * bucket.rate))
        bucket.refill(now)
        return bucket


def estimate_tokens(prompt_chars: int, max_tokens: int) -> int:
    """A request's tokens before it runs: about 4 characters per prompt token, plus the most
    it may generate."""
    return estimate_prompt_tokens(prompt_chars) + max_tokens


def estimate_prompt_tokens(prompt_chars: int) -> int:
    """A prompt's tokens before the engine counts them: about 4 characters per token."""
    return math.ceil(prompt_chars / 4)


def _seconds(wait: float) -> int:
    """`Retry-After`: whole seconds, at least 1."""
    return max(1, math.ceil(wait))

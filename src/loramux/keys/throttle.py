"""Throttling of failed authentication per client address: guessing keys does not scale.

`FailureThrottle` counts the failed authentications (wrong or missing keys) of each client
address in a sliding window. Once an address has `max_failures` in the window, `retry_after`
says how long it must wait (until its oldest failure leaves the window); every other address is
unaffected. No I/O and no HTTP: the API's middleware (`loramux.api.throttle`) asks it before a
request and tells it about every 401.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_ADDRESSES = 10_000
"""Addresses remembered at once; the least recently failing ones are forgotten first."""


class FailureThrottle:
    """Failed authentications per client address, in a sliding window."""

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = MAX_ADDRESSES,
    ) -> None:
        """Args:
        max_failures: failures an address may make within `window_s` before it waits.
        window_s: the window, in seconds.
        clock: monotonic seconds (tests pass a fake).
        max_addresses: addresses remembered at once (memory stays bounded under a flood).
        """
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self.max_addresses = max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> int | None:
        """Whole seconds `address` must wait before its next request; None when it may go on."""
        now = self.clock()
        with self._lock:
            failures = self._failures.get(address)
            if failures is None:
                return None
            self._expire(failures, now)
            if not failures:
                del self._failures[address]
                return None
            if len(failures) < self.max_failures:
                return None
            return max(1, math.ceil(failures[0] + self.window_s - now))

    def failed(self, address: str) -> None:
        """Count one failed authentication of `address`."""
        now = self.clock()
        with self._lock:
            failures = self._failures.pop(address, deque())
            self._expire(failures, now)
            failures.append(now)
            while len(failures) > self.max_failures:
                failures.popleft()  # only the newest `max_failures` can matter
            self._failures[address] = failures  # most recently failing last
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)

    def _expire(self, failures: deque[float], now: float) -> None:
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()

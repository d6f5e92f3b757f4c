"""Fair share of generation slots between tenants: the Virtual Token Counter (VTC) rule.

After "Fairness in Serving Large Language Models" (Sheng et al., OSDI 2024): every tenant (a
department, or a key without one) has a counter of the tokens it was served, each divided by
the weight of the key that asked for them, so a tenant of weight 2 is served twice the tokens of
one of weight 1 for the same counter. A free slot goes to the waiting tenant with the lowest
counter (first come, first served within a tenant). A tenant that arrives after idling is lifted
to the lowest counter of the active tenants, so it cannot bank the time it was away and then
starve the others. A tenant that floods the queue therefore waits behind its own requests while
a light tenant's requests go to the front.

`TenantQueues` holds the waiters and the counters; it knows nothing about asyncio or time, so
the rule is tested on its own (`loramux.gateway.admission` wraps it in slots and futures).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class VirtualTokenCounter:
    """Weighted tokens served per tenant."""

    def __init__(self) -> None:
        self._counters: dict[str, float] = {}

    def counter(self, tenant: str) -> float:
        return self._counters.get(tenant, 0.0)

    def charge(self, tenant: str, tokens: float, weight: float = 1.0) -> None:
        """Count `tokens` served to `tenant` by a key of `weight` (> 0)."""
        if tokens > 0:
            self._counters[tenant] = self.counter(tenant) + tokens / weight

    def lift(self, tenant: str, active: Iterable[str]) -> None:
        """A tenant that was idle comes back: raise its counter to the lowest counter of the
        `active` tenants (never lower it). With no active tenant it keeps its counter."""
        others = [self.counter(t) for t in active if t != tenant]
        if others:
            self._counters[tenant] = max(self.counter(tenant), min(others))

    def lowest(self, tenants: Iterable[str]) -> str | None:
        """The tenant with the lowest counter (the first one given on a tie)."""
        best: str | None = None
        for tenant in tenants:
            if best is None or self.counter(tenant) < self.counter(best):
                best = tenant
        return best


class TenantQueues(Generic[T]):
    """Waiters in one FIFO per tenant, served in the order of the tenants' counters."""

    def __init__(self) -> None:
        self.vtc = VirtualTokenCounter()
        self._queues: dict[str, deque[T]] = {}
        self._weights: dict[str, float] = {}

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def waiting(self, tenant: str) -> int:
        """Waiters of `tenant`."""
        queue = self._queues.get(tenant)
        return len(queue) if queue else 0

    def tenants(self) -> list[str]:
        """Tenants with at least one waiter, in the order they started waiting."""
        return [t for t, q in self._queues.items() if q]

    def push(self, tenant: str, item: T, weight: float = 1.0) -> None:
        """Add a waiter at the end of its tenant's line."""
        self._queues.setdefault(tenant, deque()).append(item)
        self._weights[tenant] = weight

    def remove(self, tenant: str, item: T) -> bool:
        """Take a waiter out (it gave up); False when it was not there."""
        queue = self._queues.get(tenant)
        if not queue or item not in queue:
            return False
        queue.remove(item)
        if not queue:
            del self._queues[tenant]
        return True

    def pop_next(self) -> tuple[str, T] | None:
        """The first waiter of the tenant with the lowest counter, taken out of its line."""
        tenant = self.vtc.lowest(self.tenants())
        if tenant is None:
            return None
        return tenant, self._pop(tenant, newest=False)

    def crowding(self, tenant: str, weight: float) -> tuple[str, T] | None:
        """Make room for one more waiter of `tenant`: the newest waiter of the tenant that holds
        the most of the queue for its weight, when that is another tenant holding more than
        `tenant` would with one more; None when `tenant` itself is the one crowding the queue.
        """
        hog = max(
            self.tenants(),
            key=lambda t: self.waiting(t) / self._weights.get(t, 1.0),
            default=None,
        )
        if hog is None or hog == tenant:
            return None
        if self.waiting(hog) / self._weights.get(hog, 1.0) <= (self.waiting(tenant) + 1) / weight:
            return None
        return hog, self._pop(hog, newest=True)

    def _pop(self, tenant: str, *, newest: bool) -> T:
        queue = self._queues[tenant]
        item = queue.pop() if newest else queue.popleft()
        if not queue:
            del self._queues[tenant]
        return item

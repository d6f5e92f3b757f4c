"""Fair share between tenants: the Virtual Token Counter rule on its own (a simulated server on
a fake clock), then through the admission queue's slots and refusals."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

import pytest

from loramux.errors import ServerOverloadedError
from loramux.gateway.admission import AdmissionQueue, Ticket
from loramux.gateway.fairshare import TenantQueues, VirtualTokenCounter


def test_the_lowest_counter_is_served_first_and_weights_divide_tokens() -> None:
    vtc = VirtualTokenCounter()
    vtc.charge("hr", 100)
    vtc.charge("it", 100, weight=2.0)  # a weight-2 key's tokens count half
    assert vtc.counter("it") == 50
    assert vtc.lowest(["hr", "it"]) == "it"
    vtc.charge("it", 120, weight=2.0)
    assert vtc.lowest(["hr", "it"]) == "hr"


def test_a_tenant_back_from_idling_is_lifted_to_the_lowest_active_counter() -> None:
    vtc = VirtualTokenCounter()
    vtc.charge("hr", 500)
    vtc.charge("it", 300)
    vtc.lift("fin", ["hr", "it"])  # fin never ran: it may not bank the time it was away
    assert vtc.counter("fin") == 300
    vtc.charge("fin", 1000)
    vtc.lift("fin", ["hr", "it"])  # never lowered
    assert vtc.counter("fin") == 1300
    vtc.lift("ops", [])  # nobody active: nothing to be lifted to
    assert vtc.counter("ops") == 0


def test_a_full_queue_makes_room_by_dropping_the_hogs_newest_waiter() -> None:
    lines: TenantQueues[str] = TenantQueues()
    for i in range(5):
        lines.push("hr", f"hr{i}")
    lines.push("it", "it0")
    assert lines.crowding("it", 1.0) == ("hr", "hr4")
    assert lines.crowding("hr", 1.0) is None  # hr crowds itself: it is the one refused
    lines.push("fin", "fin0", weight=10.0)  # a heavy weight may hold more of the queue
    assert lines.crowding("fin", 10.0) == ("hr", "hr3")
    assert lines.waiting("hr") == 3


@dataclass
class Sim:
    """A server with `slots` generation slots, each request `tokens` long at one token a tick
    per slot; the rule under test hands out the slots."""

    slots: int
    tokens: int
    lines: TenantQueues[int] = field(default_factory=TenantQueues)
    running: list[tuple[str, int, int]] = field(default_factory=list)  # tenant, id, tokens left
    now: int = 0
    arrived: dict[int, int] = field(default_factory=dict)
    waits: dict[str, list[int]] = field(default_factory=dict)
    served: Counter[str] = field(default_factory=Counter)

    def arrive(self, tenant: str, rid: int, weight: float = 1.0) -> None:
        if tenant not in {t for t, _, _ in self.running} and not self.lines.waiting(tenant):
            self.lines.vtc.lift(tenant, {t for t, _, _ in self.running} | set(self.lines.tenants()))
        self.arrived[rid] = self.now
        self.lines.push(tenant, rid, weight)

    def tick(self, weights: dict[str, float]) -> list[tuple[str, int]]:
        """Fill free slots, then generate one token per running request; returns finished."""
        while len(self.running) < self.slots and (picked := self.lines.pop_next()):
            tenant, rid = picked
            self.waits.setdefault(tenant, []).append(self.now - self.arrived[rid])
            self.running.append((tenant, rid, self.tokens))
        finished, still = [], []
        for tenant, rid, left in self.running:
            self.lines.vtc.charge(tenant, 1, weights.get(tenant, 1.0))
            self.served[tenant] += 1
            if left == 1:
                finished.append((tenant, rid))
            else:
                still.append((tenant, rid, left - 1))
        self.running = still
        self.now += 1
        return finished


def test_a_flooding_tenant_waits_on_itself_on_a_fake_clock() -> None:
    """hr keeps 40 requests waiting; it sends one at a time, each as soon as the last ended."""
    sim = Sim(slots=4, tokens=10)
    rid = 0
    for _ in range(40):
        sim.arrive("hr", rid := rid + 1)
    sim.arrive("it", rid := rid + 1)
    for _ in range(2000):
        for tenant, _ in sim.tick({}):
            sim.arrive(tenant, rid := rid + 1)
    # `it` waits at most for the next slot to come free: 10 tokens / 4 slots, never 40 / 4 * 10.
    assert max(sim.waits["it"]) <= sim.tokens
    assert max(sim.waits["hr"]) >= 90
    # and hr still gets the slots it does not take from it (work-conserving)
    assert sim.served["hr"] + sim.served["it"] == 4 * 2000


def test_weights_share_the_slots_in_proportion_on_a_fake_clock() -> None:
    sim = Sim(slots=6, tokens=5)
    weights = {"hr": 2.0, "it": 1.0}
    rid = 0
    for tenant in ("hr", "it"):
        for _ in range(30):
            sim.arrive(tenant, rid := rid + 1, weights[tenant])
    for _ in range(3000):
        for tenant, _ in sim.tick(weights):
            sim.arrive(tenant, rid := rid + 1, weights[tenant])
    assert sim.served["hr"] / sim.served["it"] == pytest.approx(2.0, rel=0.1)


def fair_queue(in_flight: int = 1, queued: int = 2, **kw: object) -> AdmissionQueue:
    return AdmissionQueue(
        max_in_flight=in_flight,
        max_queued=queued,
        queue_timeout_s=5,
        retry_after_s=2,
        fair_share=True,
        **kw,  # type: ignore[arg-type]
    )


async def test_a_light_tenant_takes_the_next_slot_and_the_hog_gets_the_503() -> None:
    q = fair_queue(in_flight=1, queued=2)
    running = await q.acquire(Ticket("hr"))
    q.charge(running, 50)
    hr = [asyncio.create_task(q.acquire(Ticket("hr"))) for _ in range(2)]
    await asyncio.sleep(0)
    assert q.depth == 2
    it = asyncio.create_task(q.acquire(Ticket("it")))
    await asyncio.sleep(0)
    with pytest.raises(ServerOverloadedError, match="holds most of the queue"):
        await hr[1]  # the newest hr waiter made room for it
    with pytest.raises(ServerOverloadedError, match="at capacity"):
        await q.acquire(Ticket("hr"))  # hr crowds itself: refused at once
    q.charge(running, 10)  # hr's running request goes on generating
    q.release(running)
    await it  # it was lifted to hr's counter of then: now lower, so it goes first
    assert not hr[0].done()
    q.release(it.result())
    await hr[0]
    assert (q.in_flight, q.depth, q.rejected) == (1, 0, 2)


async def test_a_tenant_may_queue_at_most_its_bound() -> None:
    q = fair_queue(in_flight=1, queued=10, max_queued_per_tenant=1)
    await q.acquire(Ticket("hr"))
    waiting = asyncio.create_task(q.acquire(Ticket("hr")))
    await asyncio.sleep(0)
    with pytest.raises(ServerOverloadedError, match="waiting already"):
        await q.acquire(Ticket("hr"))
    other = asyncio.create_task(q.acquire(Ticket("it")))
    await asyncio.sleep(0)
    assert q.depth == 2
    waiting.cancel()
    other.cancel()
    await asyncio.gather(waiting, other, return_exceptions=True)
    assert q.depth == 0


async def test_without_fair_share_every_tenant_shares_one_fifo_line() -> None:
    q = AdmissionQueue(max_in_flight=1, max_queued=2, queue_timeout_s=5)
    first = await q.acquire(Ticket("hr"))
    hr = [asyncio.create_task(q.acquire(Ticket("hr"))) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(ServerOverloadedError, match="at capacity"):
        await q.acquire(Ticket("it"))  # the old behaviour: the light tenant is refused
    q.release(first)
    await hr[0]
    assert not hr[1].done()
    q.release(hr[0].result())
    await hr[1]

"""Recent traffic kept in memory for the dashboard: who answered the last requests, and requests
per second by route over the last minutes.

`Activity.record` is called once per finished request (by `GatewayMetrics`). Nothing here is
persisted; a restart starts empty. The last user message is kept only when the dashboard is
configured to show texts (`dashboard.show_texts`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RequestRow:
    """One finished request, as the dashboard's decision table shows it."""

    at: float
    request_id: str
    model: str
    """The `model` the client asked for (`auto`, an adapter, the base model)."""
    routed: bool
    """True when the router decided (`model: "auto"`); scores mean nothing otherwise."""
    route: str | None
    target: str
    adapter: str
    version: str | None
    score: float
    margin: float
    alternatives: tuple[tuple[str, float], ...]
    reason: str
    ttft_ms: float | None
    total_ms: float
    completion_tokens: int
    error: bool
    text: str | None = None
    """The last user message, only when `dashboard.show_texts` is on."""

    @property
    def series(self) -> str:
        """The traffic chart's series: the route, else what answered (`base` or `rag`)."""
        return self.route or self.target

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "request_id": self.request_id,
            "model": self.model,
            "routed": self.routed,
            "route": self.route,
            "target": self.target,
            "adapter": self.adapter,
            "version": self.version,
            "score": round(self.score, 4),
            "margin": round(self.margin, 4),
            "alternatives": [{"route": r, "score": round(s, 4)} for r, s in self.alternatives],
            "reason": self.reason,
            "ttft_ms": self.ttft_ms,
            "total_ms": self.total_ms,
            "completion_tokens": self.completion_tokens,
            "error": self.error,
            "text": self.text,
        }


class Activity:
    """Recent requests and a per-route traffic timeline (thread-safe)."""

    def __init__(
        self,
        *,
        recent: int = 100,
        keep_texts: bool = False,
        window_s: int = 300,
        step_s: int = 5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Args:
        recent: requests kept for the decision table.
        keep_texts: keep the last user message of each request (else it is never stored).
        window_s: how far back the timeline reaches.
        step_s: width of one timeline bucket.
        clock: wall clock (tests pass their own).
        """
        self.keep_texts = keep_texts
        self.window_s = window_s
        self.step_s = step_s
        self._clock = clock
        self._rows: deque[RequestRow] = deque(maxlen=recent)
        self._buckets: dict[int, Counter[str]] = {}
        self._lock = threading.Lock()

    def record(self, row: RequestRow) -> None:
        if not self.keep_texts and row.text is not None:
            raise ValueError("texts are not kept: dashboard.show_texts is off")
        bucket = int(row.at // self.step_s)
        with self._lock:
            self._rows.append(row)
            self._buckets.setdefault(bucket, Counter())[row.series] += 1
            oldest = bucket - self.window_s // self.step_s
            for stale in [b for b in self._buckets if b < oldest]:
                del self._buckets[stale]

    def recent(self, limit: int | None = None) -> list[RequestRow]:
        """The latest requests, newest first."""
        with self._lock:
            rows = list(self._rows)
        rows.reverse()
        return rows[:limit] if limit is not None else rows

    def timeline(self) -> dict[str, Any]:
        """Requests per second by series over the window, oldest bucket first (for the chart)."""
        now = self._clock()
        last = int(now // self.step_s)
        count = self.window_s // self.step_s
        first = last - count + 1
        with self._lock:
            names = sorted({name for c in self._buckets.values() for name in c})
            series = {
                name: [
                    round(self._buckets.get(b, Counter())[name] / self.step_s, 3)
                    for b in range(first, last + 1)
                ]
                for name in names
            }
        return {
            "now": now,
            "step_s": self.step_s,
            "window_s": self.window_s,
            "start": first * self.step_s,
            "series": series,
        }

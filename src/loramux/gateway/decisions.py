"""The decision log: every routing decision and A/B assignment, as JSON lines on disk, for
offline evaluation (counterfactual estimates of a new router or split need the propensity of
what was chosen).

`DecisionLog.write` appends one line per finished generation to `<dir>/decisions-<N>.jsonl`
(`decisions.dir`, default `<data_dir>/decisions`). A file that reaches `max_file_bytes` is
closed and the next number started; past `max_files` the oldest file is deleted, so the log is
bounded. A line holds ids, the router's candidates with scores, the chosen target, adapter,
version and experiment, the propensity of the choice (the chosen version's traffic weight / 100
for an A/B split, 1.0 for deterministic choices: the router's decision and pinned or single
versions), latency, tokens and the outcome. Feedback is not written here: `read_decisions`
callers join it later by request id (the registry keeps it). The prompt is written only when
`dashboard.show_texts` is on. Writing never fails a request: an I/O error is logged once.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from loramux.config import DecisionLogSettings

if TYPE_CHECKING:
    from loramux.gateway.service import PreparedRequest

logger = logging.getLogger(__name__)

FILE_RE = re.compile(r"^decisions-(\d+)\.jsonl$")


def log_files(folder: Path) -> list[Path]:
    """The log's files, oldest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := FILE_RE.match(p.name))]
    return [p for _, p in sorted(found)]


class DecisionLog:
    """Appends decision records to a bounded, rotated set of JSONL files (thread-safe)."""

    def __init__(self, folder: Path, *, max_file_bytes: int, max_files: int) -> None:
        self.folder = folder
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._number = -1
        self._size = 0
        self._failed = False

    @classmethod
    def from_settings(cls, settings: DecisionLogSettings, data_dir: Path) -> DecisionLog | None:
        """The configured log; None when `decisions.enabled` is off."""
        if not settings.enabled:
            return None
        folder = settings.dir or data_dir / "decisions"
        return cls(
            folder.expanduser(),
            max_file_bytes=settings.max_file_bytes,
            max_files=settings.max_files,
        )

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (one line); rotates first when the current file is full."""
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"
        size = len(line.encode("utf-8"))
        with self._lock:
            try:
                if self._file is None or self._size + size > self.max_file_bytes:
                    self._rotate()
                assert self._file is not None
                self._file.write(line)
                self._file.flush()
                self._size += size
                self._failed = False
            except OSError as exc:
                if not self._failed:
                    logger.error("cannot write the decision log in %s: %s", self.folder, exc)
                self._failed = True
                self._close()

    def _rotate(self) -> None:
        """Open the next file (continuing the last one left by an earlier run when it has
        room), and delete the oldest beyond `max_files`."""
        self._close()
        self.folder.mkdir(parents=True, exist_ok=True)
        files = log_files(self.folder)
        if self._number < 0 and files:
            last = files[-1]
            self._number = int(FILE_RE.match(last.name).group(1))  # type: ignore[union-attr]
            if last.stat().st_size >= self.max_file_bytes:
                self._number += 1
        else:
            self._number += 1
        path = self.folder / f"decisions-{self._number}.jsonl"
        self._file = path.open("a", encoding="utf-8")
        self._size = path.stat().st_size
        files = log_files(self.folder)
        for old in files[: max(0, len(files) - self.max_files)]:
            old.unlink(missing_ok=True)

    def _close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None

    def close(self) -> None:
        with self._lock:
            self._close()


def read_decisions(folder: Path) -> Iterator[dict[str, Any]]:
    """Every record in the log, oldest first; lines that are not JSON objects are skipped (a
    line cut short by a crash)."""
    for path in log_files(folder):
        with path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    yield record


@dataclass(frozen=True)
class Group:
    """Counts for one (route, target, adapter, version)."""

    route: str
    target: str
    adapter: str
    version: str
    requests: int
    errors: int
    client_errors: int
    abstained: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    up: int
    down: int


def summarise(
    records: Iterator[dict[str, Any]], ratings: dict[str, str] | None = None
) -> dict[str, Any]:
    """Per route/target/adapter/version: requests, errors, abstentions, latency p50/p95 and
    feedback (`ratings`: request id -> "up" | "down", joined by request id).

    Returns:
        {"requests", "routed", "abstention_rate", "groups": [Group as dict, ...]}.
    """
    ratings = ratings or {}
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    total = routed = abstained = 0
    for r in records:
        total += 1
        if r.get("routed"):
            routed += 1
            abstained += int(bool(r.get("abstained")))
        key = (
            str(r.get("route") or "-"),
            str(r.get("target") or "-"),
            str(r.get("adapter") or "-"),
            str(r.get("version") or "-"),
        )
        groups.setdefault(key, []).append(r)
    out = []
    for (route, target, adapter, version), rows in sorted(groups.items()):
        latencies = sorted(
            float(r["latency_ms"])
            for r in rows
            if r.get("outcome") == "ok" and isinstance(r.get("latency_ms"), int | float)
        )
        rated = [ratings.get(str(r.get("request_id"))) for r in rows]
        group = Group(
            route=route,
            target=target,
            adapter=adapter,
            version=version,
            requests=len(rows),
            errors=sum(r.get("outcome") == "error" for r in rows),
            client_errors=sum(r.get("outcome") == "client_error" for r in rows),
            abstained=sum(bool(r.get("routed") and r.get("abstained")) for r in rows),
            latency_p50_ms=_quantile(latencies, 0.5),
            latency_p95_ms=_quantile(latencies, 0.95),
            up=rated.count("up"),
            down=rated.count("down"),
        )
        out.append(group.__dict__)
    return {
        "requests": total,
        "routed": routed,
        "abstention_rate": abstained / routed if routed else None,
        "groups": out,
    }


def _quantile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank quantile of sorted values; None when there are none."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def decision_record(
    prepared: PreparedRequest,
    *,
    ttft_s: float | None,
    total_s: float,
    prompt_tokens: int,
    completion_tokens: int,
    outcome: str,
    keep_text: bool,
) -> dict[str, Any]:
    """One line of the decision log (`gateway.decisions`): never the prompt unless
    `keep_text` (`dashboard.show_texts`)."""
    from loramux.gateway.dispatch import AUTO_MODEL

    generation, dispatch = prepared.generation, prepared.dispatch
    decision = dispatch.decision if dispatch else None
    assignment = dispatch.assignment if dispatch else None
    record: dict[str, Any] = {
        "at": round(time.time(), 3),
        "request_id": generation.request_id,
        "key_id": prepared.key_id,
        "endpoint": "completions" if generation.prompt is not None else "chat",
        "model": prepared.model,
        "routed": decision is not None and prepared.model == AUTO_MODEL,
        "route": decision.route if decision else None,
        "target": decision.target.value if decision else "base",
        "abstained": decision.abstained if decision else False,
        "score": round(decision.score, 4) if decision else None,
        "margin": round(decision.margin, 4) if decision else None,
        "candidates": [
            {"name": name, "score": round(score, 4)}
            for name, score in (decision.alternatives if decision else ())
        ],
        "reason": decision.reason if decision else "raw completion of the base model",
        "adapter": assignment.version.name if assignment else None,
        "version": assignment.version.version if assignment else None,
        "experiment": assignment.experiment_id or None if assignment else None,
        "propensity": round(dispatch.propensity, 4) if dispatch else 1.0,
        "ttft_ms": round(1000 * ttft_s, 1) if ttft_s is not None else None,
        "latency_ms": round(1000 * total_s, 1),
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "outcome": outcome,
    }
    if keep_text:
        users = [m.content for m in generation.messages if m.role == "user"]
        record["text"] = users[-1] if users else generation.prompt
    return record

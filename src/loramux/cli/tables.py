"""Plain-text tables for people: what `loramux adapters list|show|experiment` and
`loramux report decisions` print unless `--json` is given (scripts use `--json`).

Each function takes the same JSON-shaped dicts the HTTP API answers, so the table and
`--json` never disagree.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows) and bool(rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(list(headers)), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _when(at: float | None) -> str:
    return "-" if not at else time.strftime("%Y-%m-%d %H:%M", time.gmtime(at))


def _traffic(adapter: Mapping[str, Any]) -> str:
    split = adapter.get("traffic") or {}
    return " ".join(f"{v[:12]}={w}" for v, w in sorted(split.items(), key=lambda kv: -kv[1]))


def adapters_table(adapters: Sequence[Mapping[str, Any]]) -> str:
    """`loramux adapters list`."""
    if not adapters:
        return "no adapters registered (loramux adapters register PATH --name NAME)"
    rows = [
        (
            a["name"],
            a.get("department") or "-",
            len(a.get("versions", ())),
            (a.get("main_version") or "-")[:12],
            _traffic(a) or "-",
            "yes" if a.get("pinned") else "",
            _when(a.get("updated_at")),
        )
        for a in adapters
    ]
    headers = ("adapter", "department", "versions", "main", "traffic", "pinned", "updated (UTC)")
    return table(headers, rows)


def adapter_detail(adapter: Mapping[str, Any]) -> str:
    """`loramux adapters show NAME`: the adapter, its versions, its recent audit log."""
    head = [
        f"adapter     {adapter['name']}",
        f"department  {adapter.get('department') or '-'}",
        f"description {adapter.get('description') or '-'}",
        f"main        {adapter.get('main_version') or '-'}",
        f"experiment  {adapter.get('experiment_id') or '-'}",
        f"pinned      {'yes' if adapter.get('pinned') else 'no'}",
        f"utterances  {len(adapter.get('utterances', ()))}",
        "",
    ]
    versions = [
        (
            v["id"],
            v["status"],
            v["weight"],
            v["rank"],
            ",".join(v.get("target_modules", ())),
            round(v["size_bytes"] / 1024, 1),
            _when(v.get("created_at")),
            v.get("created_by", ""),
        )
        for v in adapter.get("versions", ())
    ]
    out = "\n".join(head) + table(
        ("version", "status", "weight", "rank", "targets", "KiB", "created (UTC)", "by"),
        versions,
    )
    audit = adapter.get("audit")
    if audit:
        rows = [
            (_when(e.get("at")), e.get("actor", ""), e.get("action", ""), e.get("version") or "-")
            for e in audit[:20]
        ]
        out += "\n\naudit (newest first)\n" + table(
            ("at (UTC)", "actor", "action", "version"), rows
        )
    return out


def _latency(value: Mapping[str, Any] | None) -> str:
    if not value:
        return "-"
    return f"{value['p50_ms']:.0f}/{value['p95_ms']:.0f}"


def experiment_table(report: Mapping[str, Any]) -> str:
    """`loramux adapters experiment NAME`: per-version results, the test and the verdict."""
    main = report.get("main_version")
    rows = []
    for arm in report.get("arms", ()):
        requests = arm["requests"]
        err = f"{arm['errors']} ({arm['errors'] / requests:.1%})" if requests else "0"
        rate = "-"
        if arm.get("up_rate") is not None:
            lo, hi = arm["up_rate_ci"]
            rate = f"{arm['up_rate']:.1%} [{lo:.1%}, {hi:.1%}]"
        rows.append(
            (
                arm["version"] + (" (main)" if arm["version"] == main else ""),
                arm["weight"],
                requests,
                err,
                _latency(arm.get("ttft")),
                _latency(arm.get("total")),
                f"{arm['up']}/{arm['down']}",
                rate,
            )
        )
    headers = (
        "version",
        "weight",
        "requests",
        "errors",
        "TTFT p50/p95 ms",
        "total p50/p95 ms",
        "up/down",
        "thumbs-up [CI]",
    )
    out = [
        f"adapter {report['adapter']}  experiment {report.get('experiment_id') or '-'}",
        table(headers, rows),
    ]
    test = report.get("test")
    if test:
        lo, hi = test["diff_ci"]
        out.append(
            f"mSPRT {test['challenger']} - {test['main']}: {test['diff']:+.3f} "
            f"[{lo:+.3f}, {hi:+.3f}] (confidence sequence), likelihood ratio "
            f"{test['likelihood_ratio']:.3g} of {test['threshold']:.3g} needed, always-valid "
            f"p = {test['p_value']:.3g}"
        )
    rec = report.get("recommendation") or {}
    out.append(f"recommendation: {rec.get('action')}: {rec.get('reason')}")
    if report.get("latency_source"):
        out.append(str(report["latency_source"]))
    return "\n".join(out)

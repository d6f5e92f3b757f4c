"""The dashboard's HTML: plain server-rendered pages, one function per page.

Every value from the registry or a request is escaped here (`_e`). The pages use no inline
script or style (the Content-Security-Policy forbids them): `static/dashboard.css` styles them
and `static/dashboard.js` draws the live traffic chart.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from loramux.adapters.experiment import ArmStats, ExperimentReport, Latency
from loramux.api.dashboard.charts import Chart
from loramux.gateway.activity import RequestRow

NAV = (
    ("/ui", "Overview"),
    ("/ui/decisions", "Router decisions"),
    ("/ui/experiments", "A/B results"),
    ("/ui/eval", "Evaluation"),
)


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def page(title: str, body: str, *, active: str = "", csrf: str | None = None) -> str:
    """A whole page: head, navigation (with a logout button when logged in), body."""
    nav = ""
    if csrf is not None:
        links = "".join(
            f'<a href="{href}"{" class=active" if href == active else ""}>{_e(label)}</a>'
            for href, label in NAV
        )
        nav = (
            f'<nav>{links}<form method="post" action="/ui/logout" class="logout">'
            f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
            '<button type="submit">Log out</button></form></nav>'
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} · loramux</title>"
        '<link rel="stylesheet" href="/ui/static/dashboard.css">'
        '<script src="/ui/static/dashboard.js" defer></script></head>'
        f"<body><header><h1>loramux</h1>{nav}</header><main><h2>{_e(title)}</h2>{body}</main>"
        "</body></html>"
    )


def login(nonce: str, *, error: str = "", configured: bool = True) -> str:
    note = ""
    if not configured:
        note = (
            '<p class="error">No admin key is configured on this server: set admin.keys in the '
            "config (sha256 digests) or LORAMUX_ADMIN_KEY, then restart.</p>"
        )
    if error:
        note += f'<p class="error" id="login-error">{_e(error)}</p>'
    form = (
        '<form method="post" action="/ui/login" class="login">'
        f'<input type="hidden" name="nonce" value="{_e(nonce)}">'
        '<label>Admin key <input type="password" name="key" id="key" autocomplete="off" '
        "required autofocus></label>"
        '<button type="submit" id="login">Log in</button></form>'
    )
    return page("Log in", note + form)


def overview(
    *,
    csrf: str,
    status: Mapping[str, Any],
    adapters: Sequence[Mapping[str, Any]],
    loaded: Iterable[str],
    message: str = "",
    error: str = "",
) -> str:
    """Service status, the live traffic chart, and every adapter with its split form."""
    flash = f'<p class="ok" id="flash">{_e(message)}</p>' if message else ""
    flash += f'<p class="error" id="flash-error">{_e(error)}</p>' if error else ""
    facts = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in status.items())
    chart = (
        "<section><h3>Live traffic by route</h3>"
        '<canvas id="traffic" width="960" height="260" data-src="/ui/api/traffic" '
        'aria-label="requests per second by route"></canvas>'
        '<div id="traffic-legend" class="legend"></div></section>'
    )
    loaded_keys = set(loaded)
    cards = "".join(_adapter_card(a, csrf, loaded_keys) for a in adapters)
    if not adapters:
        cards = "<p>No adapters are registered.</p>"
    return page(
        "Overview",
        f'{flash}<dl class="status">{facts}</dl>{chart}<section><h3>Adapters</h3>{cards}</section>',
        active="/ui",
        csrf=csrf,
    )


def _adapter_card(adapter: Mapping[str, Any], csrf: str, loaded: set[str]) -> str:
    name = adapter["name"]
    rows = []
    inputs = []
    for v in adapter["versions"]:
        vid = v["id"]
        held = "yes" if f"{name}@{vid}" in loaded else "no"
        main = " (main)" if vid == adapter["main_version"] else ""
        rows.append(
            f'<tr data-version="{_e(vid)}"><td><code>{_e(vid)}</code>{main}</td>'
            f'<td class="status-{_e(v["status"])}">{_e(v["status"])}</td>'
            f'<td class="weight">{_e(v["weight"])}</td><td>{held}</td><td>{_e(v["rank"])}</td>'
            f"<td>{_e(v['size_bytes'])}</td><td>{_e(_when(v['created_at']))}</td>"
            f"<td>{_e(v['created_by'])}</td></tr>"
        )
        if v["status"] != "retired":
            inputs.append(
                f'<label><code>{_e(vid)}</code> <input type="number" min="0" max="100" '
                f'step="1" name="w_{_e(vid)}" value="{_e(v["weight"])}"></label>'
            )
    form = ""
    if len(inputs) > 1:
        form = (
            f'<form method="post" action="/ui/adapters/{_e(name)}/traffic" class="split" '
            f'id="split-{_e(name)}"><input type="hidden" name="csrf" value="{_e(csrf)}">'
            f'{"".join(inputs)}<button type="submit">Apply split</button>'
            "<small>weights sum to 100; users keep their version while a split stands</small>"
            "</form>"
        )
    description = adapter.get("description") or ""
    experiment = adapter.get("experiment_id") or "-"
    return (
        f'<article class="adapter" id="adapter-{_e(name)}"><h4>{_e(name)}</h4>'
        f"<p>{_e(description)} <small>experiment {_e(experiment)}</small></p>"
        "<table><thead><tr><th>version</th><th>status</th><th>weight</th><th>loaded</th>"
        "<th>rank</th><th>bytes</th><th>registered</th><th>by</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>{form}</article>"
    )


def decisions(rows: Sequence[RequestRow], *, csrf: str, show_texts: bool) -> str:
    """The routing decisions of recent requests, newest first."""
    head = (
        "<th>time</th><th>request</th><th>model</th><th>route</th><th>target</th>"
        "<th>adapter@version</th><th>score</th><th>margin</th><th>alternatives</th>"
        "<th>reason</th><th>ttft ms</th><th>total ms</th><th>tokens</th>"
    )
    if show_texts:
        head += "<th>text</th>"
    body = []
    for r in rows:
        scored = r.routed
        alts = ", ".join(f"{name} {score:.2f}" for name, score in r.alternatives[:3])
        version = f"{r.adapter}@{r.version}" if r.version else r.adapter
        cells = [
            _when(r.at),
            r.request_id,
            r.model,
            r.route or "none",
            r.target,
            version,
            f"{r.score:.3f}" if scored else "-",
            f"{r.margin:.3f}" if scored else "-",
            alts or "-",
            r.reason,
            r.ttft_ms if r.ttft_ms is not None else "-",
            r.total_ms,
            r.completion_tokens,
        ]
        if show_texts:
            cells.append(r.text or "")
        error = ' class="failed"' if r.error else ""
        body.append(f"<tr{error}>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    note = (
        "<p>Request texts are shown (dashboard.show_texts is on).</p>"
        if show_texts
        else "<p>Request texts are not kept; set dashboard.show_texts to see them.</p>"
    )
    table = (
        f'<table id="decisions"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
        "</table>"
        if body
        else "<p>No requests yet.</p>"
    )
    return page("Router decisions", note + table, active="/ui/decisions", csrf=csrf)


def experiments(reports: Sequence[ExperimentReport], *, csrf: str, confidence: float) -> str:
    """Per-version results of every adapter's current experiment, with confidence intervals."""
    if not reports:
        return page("A/B results", "<p>No adapters.</p>", active="/ui/experiments", csrf=csrf)
    parts = [
        f"<p>Thumbs-up rates with {confidence:.0%} Wilson intervals; the challenger is compared "
        "with the main version by a two-proportion z-test.</p>"
    ]
    for report in reports:
        parts.append(_experiment(report))
    return page("A/B results", "".join(parts), active="/ui/experiments", csrf=csrf)


def _latency(lat: Latency | None) -> str:
    return f"{lat.p50_ms:.0f} / {lat.p95_ms:.0f}" if lat else "-"


def _ci_bar(arm: ArmStats) -> str:
    """An SVG bar: the interval as a band, the rate as a tick, on a 0-100% scale."""
    if arm.up_rate is None or arm.up_rate_ci is None:
        return "-"
    lo, hi = arm.up_rate_ci
    x, w, p = 200 * lo, max(1.0, 200 * (hi - lo)), 200 * arm.up_rate
    return (
        f'<svg class="ci" width="200" height="14" viewBox="0 0 200 14" role="img">'
        f"<title>{arm.up_rate:.3f} [{lo:.3f}, {hi:.3f}]</title>"
        f'<rect x="0" y="6" width="200" height="2" fill="#ddd"/>'
        f'<rect x="{x:.1f}" y="2" width="{w:.1f}" height="10" fill="#8ab4f8"/>'
        f'<rect x="{p - 1:.1f}" y="0" width="2" height="14" fill="#1a4f9c"/></svg>'
    )


def _experiment(report: ExperimentReport) -> str:
    rows = []
    for arm in report.arms:
        main = " (main)" if arm.version == report.main_version else ""
        err = f"{arm.errors} ({arm.errors / arm.requests:.1%})" if arm.requests else "0"
        rate = "-"
        if arm.up_rate is not None and arm.up_rate_ci is not None:
            lo, hi = arm.up_rate_ci
            rate = f"{arm.up_rate:.3f} [{lo:.3f}, {hi:.3f}]"
        rows.append(
            f'<tr data-version="{_e(arm.version)}"><td><code>{_e(arm.version)}</code>{main}</td>'
            f"<td>{arm.weight}</td><td>{arm.requests}</td><td>{_e(err)}</td>"
            f"<td>{_e(_latency(arm.ttft))}</td><td>{_e(_latency(arm.total))}</td>"
            f"<td>{arm.up} / {arm.down}</td><td>{_e(rate)}</td><td>{_ci_bar(arm)}</td></tr>"
        )
    test = ""
    if report.test is not None:
        t = report.test
        test = (
            f"<p>challenger <code>{_e(t.challenger)}</code> minus main "
            f"<code>{_e(t.main)}</code>: {t.diff:+.3f} [{t.diff_ci[0]:+.3f}, "
            f"{t.diff_ci[1]:+.3f}] (confidence sequence), mSPRT likelihood ratio "
            f"{t.likelihood_ratio:.3g} of {t.threshold:.3g} needed, always-valid "
            f"p = {t.p_value:.3g}</p>"
        )
    rec = report.recommendation
    return (
        f'<article class="experiment" id="experiment-{_e(report.adapter)}">'
        f"<h4>{_e(report.adapter)} <small>experiment {_e(report.experiment_id or '-')}</small>"
        "</h4><table><thead><tr><th>version</th><th>weight</th><th>requests</th>"
        "<th>errors</th><th>TTFT p50/p95 ms</th><th>total p50/p95 ms</th><th>up / down</th>"
        "<th>up rate [CI]</th><th></th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>{test}"
        f'<p class="recommendation"><strong>{_e(rec.action.value)}</strong>: {_e(rec.reason)}'
        "</p></article>"
    )


def evaluation(charts: Sequence[Chart], *, csrf: str, folder: str) -> str:
    """The newest evaluation charts (PNG files of the configured folder)."""
    if not charts:
        body = (
            f"<p>No charts in <code>{_e(folder)}</code> yet: `loramux eval` and `loramux router "
            "eval --out-dir` write them (dashboard.eval_dir names the folder).</p>"
        )
        return page("Evaluation", body, active="/ui/eval", csrf=csrf)
    figures = "".join(
        f'<figure><img src="/ui/eval/files/{_e(c.path)}" alt="{_e(c.path)}" loading="lazy">'
        f"<figcaption>{_e(c.path)} · {_e(_when(c.mtime))}</figcaption></figure>"
        for c in charts
    )
    body = f"<p>Newest first, from <code>{_e(folder)}</code>.</p>"
    body += f'<div class="charts">{figures}</div>'
    return page("Evaluation", body, active="/ui/eval", csrf=csrf)

"""Learning from traffic: labelled data from the decision log and feedback, router versions,
the swap of a newly activated version while serving, rollback, and `router fit --from-log`
end to end (real gateway with the fake engine, real SQLite registry, real MiniLM)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from loramux.api import create_app
from loramux.cli import app as cli_app
from loramux.config import RouteSpec, load_config, load_routes
from loramux.errors import CalibrationDataError, RouterNotFittedError
from loramux.router.fit.calibration import fit
from loramux.router.fit.data import load_labelled
from loramux.router.fit.evaluation import evaluate_router
from loramux.router.fit.refit import (
    check_enough,
    labelled_from_log,
    load_corrections,
    split_held_out,
)
from loramux.router.persist import save_router
from loramux.router.semantic import SemanticRouter, Thresholds
from loramux.router.versions import RouterVersions, resolve_fitted
from loramux.serve.fake import FakeEngine
from tests.builders import admin_key, write_lora_folder
from tests.fakes import TinyEncoder
from tests.router.conftest import DEMO_CALIB, DEMO_ROUTES, DEMO_TEST

ADMIN_KEY = admin_key("refit-admin")
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


def _record(rid: str, text: str | None, route: str | None, target: str) -> dict[str, Any]:
    row: dict[str, Any] = {"request_id": rid, "routed": True, "route": route, "target": target}
    if text is not None:
        row["text"] = text
    return row


def test_labels_come_from_approved_corrections_and_thumbs_up_only() -> None:
    records = [
        _record("a", "When is payday?", "finance", "adapter"),  # thumbs up: confirmed
        _record("b", "Book me a flight", "hr", "adapter"),  # corrected to travel
        _record("c", "Tell me a joke", None, "base"),  # abstained, unrated: no label
        _record("d", "My laptop is broken", "it", "adapter"),  # thumbs down: no label
        _record("e", None, "it", "adapter"),  # no text logged
        {"request_id": "f", "routed": False, "text": "named model"},  # not an auto request
    ]
    ratings = {"a": "up", "b": "down", "d": "down"}
    log = labelled_from_log(records, ratings, {"b": "travel"}, unapproved=2)
    assert [(i.text, i.label, i.kind) for i in log.items] == [
        ("When is payday?", "finance", "confirmed"),
        ("Book me a flight", "travel", "corrected"),
    ]
    assert log.to_dict() == {
        "labelled": 2,
        "corrected": 1,
        "confirmed": 1,
        "no_text": 1,
        "unlabelled": 2,
        "unapproved_corrections": 2,
    }


def test_corrections_need_approval_and_bad_lines_are_named(tmp_path: Path) -> None:
    path = tmp_path / "corrections.jsonl"
    path.write_text(
        '{"request_id": "a", "label": "hr", "approved": true}\n'
        '{"request_id": "b", "label": "it"}\n'
        '{"request_id": "c", "label": "it", "approved": "yes"}\n',
        encoding="utf-8",
    )
    assert load_corrections(path) == ({"a": "hr"}, 2)
    path.write_text('{"request_id": "a"}\n', encoding="utf-8")
    with pytest.raises(CalibrationDataError, match=r"corrections.jsonl:1: .*label"):
        load_corrections(path)


def test_held_out_split_is_stable_and_an_empty_log_says_why() -> None:
    records = [_record(f"r{i}", f"text {i}", "hr", "adapter") for i in range(200)]
    log = labelled_from_log(records, {f"r{i}": "up" for i in range(200)}, {})
    fit_a, held_a = split_held_out(log, 0.3)
    fit_b, held_b = split_held_out(log, 0.3)
    assert held_a == held_b
    assert fit_a == fit_b
    assert 40 <= len(held_a) <= 80
    empty = labelled_from_log([_record("x", None, "hr", "adapter")], {}, {})
    with pytest.raises(CalibrationDataError, match="dashboard.show_texts"):
        check_enough(empty, [])


def _tiny_router(probability: float) -> SemanticRouter:
    encoder = TinyEncoder()
    routes = [
        RouteSpec(name="hr", utterances=["vacation days leave", "sick leave policy"]),
        RouteSpec(name="it", utterances=["laptop broken", "password reset"]),
    ]
    return SemanticRouter(encoder, routes, thresholds=Thresholds(probability=probability))


def test_versions_are_named_by_content_and_rollback_goes_back(tmp_path: Path) -> None:
    store = RouterVersions(tmp_path / "store")
    (tmp_path / "store").mkdir()
    with pytest.raises(RouterNotFittedError, match="no active version"):
        resolve_fitted(tmp_path / "store")
    lenient, strict = _tiny_router(0.3), _tiny_router(0.99)
    v1 = store.add(lambda p: save_router(lenient, p))
    again = store.add(lambda p: save_router(lenient, p))
    assert again.id == v1.id
    assert len(store.versions()) == 1
    v2 = store.add(lambda p: save_router(strict, p))
    assert v2.id != v1.id
    store.activate(v1.id)
    store.activate(v2.id[:6])  # a unique prefix names a version
    assert resolve_fitted(store.folder) == v2.fitted
    assert store.rollback().id == v1.id
    assert store.active() == v1
    data = tmp_path / "data.jsonl"
    data.write_text('{"text": "laptop broken again", "label": "it"}\n', encoding="utf-8")
    report = evaluate_router(store.folder, data, out_dir=tmp_path / "eval", encoder=TinyEncoder())
    assert report.items == 1  # `router eval --routes <store>` evaluates the active version
    with pytest.raises(RouterNotFittedError, match="is not stored"):
        store.activate("ffff")


# -- serving: swap while serving, rollback, and a real log for --from-log ---------------------


@pytest.fixture(scope="module")
def demo_routers(encoder: Any) -> tuple[SemanticRouter, SemanticRouter]:
    """A router fitted on the demo data, and the same router made to abstain on everything."""
    routes = load_routes(DEMO_ROUTES)
    fitted = fit(
        routes, load_labelled(DEMO_CALIB), 0.95, encoder=encoder, precision_slack=0.01, repeats=1
    ).router
    strict = SemanticRouter(
        encoder,
        routes,
        training=fitted.training,
        head=fitted.head,
        options=fitted.options,
        thresholds=Thresholds(probability=1.01, margin=1.0, similarity=1.0),
    )
    return fitted, strict


AppFactory = Callable[..., Any]


@pytest.fixture
def serving(tmp_path: Path) -> tuple[AppFactory, Path]:
    hr = write_lora_folder(tmp_path / "src" / "hr", seed=1)
    it = write_lora_folder(tmp_path / "src" / "it", seed=2)
    config_file = tmp_path / "loramux.yaml"
    store = tmp_path / "router-store"
    config_file.write_text(
        "\n".join(
            [
                "engine: {kind: fake, max_new_tokens: 8}",
                f"paths: {{data_dir: {tmp_path / 'data'}}}",
                f"adapters:\n  hr: {{path: {hr}}}\n  it: {{path: {it}}}",
                f"router: {{fitted: {store}, reload_s: 0.1}}",
                "dashboard: {show_texts: true}",
            ]
        )
        + "\n",
        encoding="utf-8",
    )

    @asynccontextmanager
    async def build() -> AsyncIterator[httpx.AsyncClient]:
        config = load_config(config_file, environ={"LORAMUX_ADMIN_KEY": ADMIN_KEY})
        app = create_app(config, engine=FakeEngine(context_length=64))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://loramux", headers=ADMIN
            ) as client:
                yield client

    return build, config_file


async def _target(client: httpx.AsyncClient, text: str) -> str:
    r = await client.post("/v1/route", json={"messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200, r.text
    return str(r.json()["target"])


async def _wait_for(client: httpx.AsyncClient, text: str, target: str) -> None:
    for _ in range(100):
        if await _target(client, text) == target:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the router never answered {target!r} for {text!r}")


async def _rate_up(client: httpx.AsyncClient, rid: str) -> None:
    """Thumbs up, once the gateway has recorded the request (after its response)."""
    for _ in range(100):
        f = await client.post("/v1/feedback", json={"request_id": rid, "rating": "up"})
        if f.status_code == 200:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"request {rid} was never recorded: {f.text}")


async def test_an_activated_version_is_swapped_in_while_serving_and_rolled_back(
    serving: tuple[AppFactory, Path], demo_routers: tuple[SemanticRouter, SemanticRouter]
) -> None:
    build, config_file = serving
    fitted, strict = demo_routers
    store = RouterVersions(config_file.parent / "router-store")
    good = store.add(lambda p: save_router(fitted, p))
    bad = store.add(lambda p: save_router(strict, p))
    store.activate(good.id)
    text = "How many vacation days do I get?"
    async with build() as client:
        assert await _target(client, text) == "adapter"
        store.activate(bad.id)  # a bad refit: abstains on everything
        await _wait_for(client, text, "base")
        # a version that cannot be loaded is refused; the served one stays
        broken = store.folder / "versions" / "0000000000000000"
        broken.mkdir()
        (broken / "version.json").write_text('{"id": "0", "created": 1}\n', encoding="utf-8")
        (broken / "fitted.yaml").write_text("format: nonsense\n", encoding="utf-8")
        store.activate("0000000000000000")
        await asyncio.sleep(0.4)
        assert await _target(client, text) == "base"
        store.rollback(to=good.id)
        await _wait_for(client, text, "adapter")


async def test_router_fit_from_log_refits_on_served_traffic_end_to_end(
    serving: tuple[AppFactory, Path],
    demo_routers: tuple[SemanticRouter, SemanticRouter],
    tmp_path: Path,
) -> None:
    build, config_file = serving
    fitted, _ = demo_routers
    store = RouterVersions(config_file.parent / "router-store")
    before = store.add(lambda p: save_router(fitted, p))
    store.activate(before.id)
    items = [i for i in load_labelled(DEMO_TEST) if not i.history][:80]
    corrections = []
    async with build() as client:
        served = []
        for item in items:
            r = await client.post(
                "/v1/chat/completions",
                json={"model": "auto", "messages": [{"role": "user", "content": item.text}]},
            )
            assert r.status_code == 200, r.text
            right = r.headers.get("x-loramux-route") == item.label
            served.append(
                (
                    r.headers["x-request-id"],
                    item.label,
                    right and r.headers.get("x-loramux-target") == "adapter",
                )
            )
        for rid, label, confirmed in served:
            if confirmed:  # a thumbs up
                await _rate_up(client, rid)
            else:  # a reviewer's correction, approved
                corrections.append({"request_id": rid, "label": label, "approved": True})
    corrections_file = tmp_path / "corrections.jsonl"
    corrections_file.write_text(
        "".join(json.dumps(c) + "\n" for c in corrections), encoding="utf-8"
    )
    result = CliRunner().invoke(
        cli_app,
        [
            "router",
            "fit",
            "--from-log",
            "--config",
            str(config_file),
            "--data",
            str(DEMO_CALIB),
            "--corrections",
            str(corrections_file),
        ],
        env={"LORAMUX_ADMIN_KEY": ADMIN_KEY},
    )
    assert result.exit_code == 0, result.output
    assert "decision log: labelled 80" in result.output
    assert "before" in result.output
    assert "after" in result.output
    active = store.active()
    assert active is not None
    assert active.id != before.id
    assert f"new version {active.id}: activated" in result.output
    out = config_file.parent / "data" / "eval" / "router" / "refit"
    refit = json.loads((out / "refit.json").read_text(encoding="utf-8"))
    assert refit["log"]["labelled"] == 80
    assert refit["held_out"] + refit["fit_items"] == 80
    assert (out / "before_after.png").is_file()
    listed = CliRunner().invoke(
        cli_app,
        ["router", "versions", "--config", str(config_file)],
        env={"LORAMUX_ADMIN_KEY": ADMIN_KEY},
    )
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert len(lines) == 2
    assert lines[1].startswith(f"* {active.id}")
    assert "held-out precision" in lines[1]
    rollback = CliRunner().invoke(
        cli_app,
        ["router", "rollback", "--config", str(config_file)],
        env={"LORAMUX_ADMIN_KEY": ADMIN_KEY},
    )
    assert rollback.exit_code == 0, rollback.output
    assert store.active() == before


def test_from_log_options_are_refused_without_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli_app,
        [
            "router",
            "fit",
            "--routes",
            str(DEMO_ROUTES),
            "--data",
            str(DEMO_CALIB),
            "--out",
            str(tmp_path / "f.yaml"),
            "--held-out",
            "0.2",
        ],
    )
    assert result.exit_code != 0
    assert "--held-out only apply with --from-log" in result.output

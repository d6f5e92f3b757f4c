"""`loramux eval task|forgetting|matrix`: task quality, forgetting and the misroute matrix."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from loramux.cli.app import ConfigOpt, eval_app, fail, progress, setup_logging
from loramux.config import LoramuxConfig, load_config
from loramux.errors import LoramuxError

AdapterOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--adapter",
        "-a",
        help="NAME=FOLDER, a PEFT adapter folder, or an adapter name of the config; may repeat.",
    ),
]
DataOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--data",
        "-d",
        help="Held-out chat JSONL: NAME=FILE or FILE (demo/data/hr/test.jsonl is `hr`); repeat.",
    ),
]
DeviceOpt = Annotated[str, typer.Option(help="auto (a CUDA GPU when present), cpu or cuda.")]
MetricOpt = Annotated[
    str | None,
    typer.Option(help="key_accuracy, token_f1 or exact_match (default: key_accuracy with keys)."),
]
LimitOpt = Annotated[int | None, typer.Option(min=1, help="Only the first N examples per file.")]
MaxNewOpt = Annotated[int, typer.Option(min=1, help="Longest answer, in tokens (greedy).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        help="Folder for <kind>.json and <kind>.png (default: <kind>/ in the dashboard's "
        "eval_dir, <data_dir>/eval, so the dashboard shows the chart)."
    ),
]


def _eval_cmd(config: Path | None, as_json: bool, run: Callable[[LoramuxConfig], Any]) -> None:
    try:
        cfg = load_config(config)
        setup_logging("warning")
        report = run(cfg)
    except LoramuxError as exc:
        fail(exc)
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.format_table())


def _eval_options(adapter: list[str] | None, out: Path | None, device: str) -> Any:
    from loramux.eval.commands import RunOptions

    return RunOptions(adapters=tuple(adapter or ()), out=out, device=device)


def _answers_eval(
    kind: str,
    adapter: list[str] | None,
    data: list[str] | None,
    metric: str | None,
    out: Path | None,
    limit: int | None,
    max_new_tokens: int,
    device: str,
    as_json: bool,
    config: Path | None,
) -> None:
    """`eval task` and `eval matrix`: both generate greedy answers to held-out task data."""

    def run(cfg: LoramuxConfig) -> Any:
        options = _eval_options(adapter, out, device)
        from loramux.eval.commands import run_matrix_eval, run_task_eval
        from loramux.eval.task import GenerationSettings

        return (run_task_eval if kind == "task" else run_matrix_eval)(
            cfg,
            options,
            data or [],
            metric=metric,
            limit=limit,
            generation=GenerationSettings(max_new_tokens=max_new_tokens),
            progress=progress,
        )

    _eval_cmd(config, as_json, run)


@eval_app.command("task")
def eval_task_cmd(
    adapter: AdapterOpt = None,
    data: DataOpt = None,
    metric: MetricOpt = None,
    out: OutOpt = None,
    limit: LimitOpt = None,
    max_new_tokens: MaxNewOpt = 48,
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Each adapter vs the base model on its own task's held-out data (greedy answers)."""

    _answers_eval(
        "task", adapter, data, metric, out, limit, max_new_tokens, device, as_json, config
    )


@eval_app.command("forgetting")
def eval_forgetting_cmd(
    adapter: AdapterOpt = None,
    benchmark: Annotated[
        list[str] | None,
        typer.Option(
            help="mmlu, arc_easy, arc_challenge, boolq, hellaswag, piqa; may repeat "
            "(default: all but piqa)."
        ),
    ] = None,
    per_benchmark: Annotated[
        int, typer.Option(min=1, help="Items per benchmark (a stratified subset).")
    ] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the subsets and the bootstrap.")] = 0,
    tolerance: Annotated[
        float, typer.Option(min=0, help="Largest drop of the average, in points, still `kept`.")
    ] = 1.0,
    out: OutOpt = None,
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """General benchmarks (MMLU, ARC, BoolQ, HellaSwag), base model vs each adapter."""

    def run(cfg: LoramuxConfig) -> Any:
        options = _eval_options(adapter, out, device)
        from loramux.eval.commands import run_forgetting_eval
        from loramux.eval.forgetting import ForgettingSettings

        settings = ForgettingSettings(per_benchmark=per_benchmark, seed=seed, tolerance=tolerance)
        if benchmark:
            settings = dataclasses.replace(settings, benchmarks=tuple(benchmark))
        return run_forgetting_eval(cfg, options, settings, progress=progress)

    _eval_cmd(config, as_json, run)


@eval_app.command("matrix")
def eval_matrix_cmd(
    adapter: AdapterOpt = None,
    data: DataOpt = None,
    metric: MetricOpt = None,
    out: OutOpt = None,
    limit: LimitOpt = None,
    max_new_tokens: MaxNewOpt = 48,
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Every adapter and the base model on every task's held-out data: the misroute cost."""

    _answers_eval(
        "matrix", adapter, data, metric, out, limit, max_new_tokens, device, as_json, config
    )


@eval_app.command("rag")
def eval_rag_cmd(
    questions: Annotated[
        Path,
        typer.Option(help="JSONL of {question, key, source}: the key must appear in the answer."),
    ] = Path("demo/data/rag/test.jsonl"),
    top_k: Annotated[
        int | None, typer.Option(min=1, max=50, help="Passages per prompt (default kb.top_k).")
    ] = None,
    limit: LimitOpt = None,
    max_new_tokens: MaxNewOpt = 64,
    out: OutOpt = None,
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """RAG faithfulness: key accuracy of RAG answers (model alone, quote, both), retrieval
    recall and sources, on knowledge-base questions with keys."""
    from loramux.eval.rag import run_rag_eval

    def run(cfg: LoramuxConfig) -> Any:
        return run_rag_eval(
            cfg,
            questions,
            top_k=top_k,
            limit=limit,
            max_new_tokens=max_new_tokens,
            device=device,
            out=out,
            progress=progress,
        )

    _eval_cmd(config, as_json, run)

"""The Typer app of the `loramux` command, its sub-apps, and what every command shares.

Errors a user can cause print as one line (`error: ...`) with exit code 1; no stack traces
unless `--debug` is given. Logging is configured here and nowhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from loramux.errors import LoramuxError
from loramux.logs import LogFormat, configure_logging

app = typer.Typer(
    name="loramux",
    help="Serve many LoRA adapters over one frozen LLM behind an OpenAI-compatible API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(help="Embedded default models: fetch, convert and check.")
app.add_typer(models_app, name="models")
router_app = typer.Typer(help="Fit and evaluate the router on labelled data.")
app.add_typer(router_app, name="router")
kb_app = typer.Typer(help="The knowledge base behind RAG answers.")
app.add_typer(kb_app, name="kb")
adapters_app = typer.Typer(help="The adapter registry: versions, traffic splits, experiments.")
app.add_typer(adapters_app, name="adapters")
eval_app = typer.Typer(help="Task quality, forgetting on general benchmarks, the misroute matrix.")
app.add_typer(eval_app, name="eval")
keys_app = typer.Typer(help="Per-department API keys for the inference endpoints.")
app.add_typer(keys_app, name="keys")
report_app = typer.Typer(help="Reports over what the server logged (the decision log).")
app.add_typer(report_app, name="report")

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config (default: configs/default.yaml if present)."),
]
state = {"debug": False}


def setup_logging(level: str, fmt: LogFormat = "text") -> None:
    """Configure logging for one command (the only place loramux configures it)."""
    configure_logging(level, fmt)


def fail(exc: BaseException) -> NoReturn:
    """Print `error: <message>` and exit 1; with `--debug`, raise instead."""
    if state["debug"]:
        raise exc
    message = exc.message if isinstance(exc, LoramuxError) else f"{type(exc).__name__}: {exc}"
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def progress(line: str) -> None:
    """A progress line, on stderr so that stdout stays machine-readable."""
    typer.echo(line, err=True)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show stack traces on errors.")] = False,
) -> None:
    state["debug"] = debug

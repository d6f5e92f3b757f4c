"""The `loramux` command line: one Typer app whose subcommands wrap importable functions.

One module per group of commands: `serve` (serve, models pull), `train`, `router` (route,
router fit|eval, kb ingest), `router_versions` (router fit --from-log, router versions|rollback),
`adapters`, `keys`, `kernels` (kernels tune|show), `evals` (eval task|forgetting|matrix) and
`report` (report decisions); `app` holds the Typer app and what the commands share. Importing
this package registers every command and stays light: heavy libraries are imported inside the
commands that need them.
"""

from __future__ import annotations

from loramux.cli import (  # noqa: F401 (registers them)
    adapters,
    evals,
    kernels,
    keys,
    report,
    router,
    router_versions,
    serve,
    train,
)
from loramux.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the `loramux` console script."""
    from loramux.models import set_offline

    set_offline()
    try:
        app()
    except KeyboardInterrupt:
        raise SystemExit(130) from None

"""`loramux kernels tune|show`: the multi-LoRA kernels' launch settings for this GPU.

`tune` searches them on the GPU (serve/kernel_tune.py) and saves a table folder under
`~/.cache/loramux/kernels/<GPU>/`, which the next `loramux serve --engine vllm` uses; `show`
says which folder would be used and why (serve/kernel_tables.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loramux.cli.app import ConfigOpt, app, fail, progress, setup_logging
from loramux.errors import EngineUnavailableError, LoramuxError

kernels_app = typer.Typer(help="Multi-LoRA GPU kernels: tune their launch settings, show them.")
app.add_typer(kernels_app, name="kernels")


@kernels_app.command("tune")
def tune_cmd(
    out: Annotated[
        Path | None,
        typer.Option(help="Folder to write (default: ~/.cache/loramux/kernels/<GPU>/)."),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Small grids within about 3 minutes.")
    ] = False,
    model_shape: Annotated[
        str,
        typer.Option(help="8b (Llama-3-8B), or hidden=H,intermediate=I,kv=KV for your model."),
    ] = "8b",
    rank: Annotated[
        int, typer.Option(help="engine.vllm.max_lora_rank (rounded as vLLM does).")
    ] = 16,
    max_loras: Annotated[int, typer.Option(help="engine.vllm.max_loras.")] = 16,
    budget_s: Annotated[
        float | None, typer.Option(help="Stop searching after this many seconds (quick: 170).")
    ] = None,
    one_launch: Annotated[
        bool, typer.Option(help="Try the fused kernel's one-launch form (else two launches).")
    ] = True,
) -> None:
    """Tune the LoRA kernels on this GPU and save the tables that `serve` then uses."""
    from loramux.serve import kernel_tables

    try:
        from loramux.serve.kernel_cases import parse_shape

        parse_shape(model_shape)
        if rank < 1 or max_loras < 1:
            raise EngineUnavailableError("--rank and --max-loras must be at least 1")
        device = kernel_tables.device_name()
        if device is None:
            raise EngineUnavailableError(
                "`loramux kernels tune` needs a CUDA GPU, and this machine has none"
            )
        setup_logging("warning")
        from loramux.serve.kernel_tune import TuneOptions, tune

        folder = out or kernel_tables.user_root() / kernel_tables.device_slug(device)
        opts = TuneOptions(
            out=folder, quick=quick, shape=model_shape, rank=rank, max_loras=max_loras,
            budget_s=budget_s, one_launch=one_launch,
        )  # fmt: skip
        written = tune(opts, progress)
    except LoramuxError as exc:
        fail(exc)
    typer.echo(str(written))


@kernels_app.command("show")
def show_cmd(config: ConfigOpt = None) -> None:
    """Say which kernel table folder `serve` would use on this GPU, and why."""
    from loramux.serve import kernel_tables

    try:
        setting: str | Path = "auto"
        if config is not None:
            from loramux.config import load_config

            value = load_config(config).engine.vllm.lora_kernel_configs
            setting = "none" if value is None else value
        choice = kernel_tables.choose(setting)
        found = (
            kernel_tables.check_folder(choice.folder, choice.device)
            if choice.folder is not None and choice.device is not None
            else []
        )
    except LoramuxError as exc:
        fail(exc)
    typer.echo(f"device: {choice.device or 'no CUDA GPU'}")
    typer.echo(f"folder: {choice.folder or 'none (default launch settings)'}")
    typer.echo(f"source: {choice.source}: {choice.reason}")
    for name in found:
        typer.echo(f"table:  {name}")

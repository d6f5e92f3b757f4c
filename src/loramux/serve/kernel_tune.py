"""`loramux kernels tune`: search the multi-LoRA kernels' launch settings on this GPU and save
them as a kernel table folder (serve/kernel_tables.py) that the next `loramux serve` uses.

Three tables, at a model's shapes (`--model-shape`), for rank-`rank` adapters in `max_loras`
slots, bf16, with one adapter and with `max_loras` mixed among the rows:
- vLLM's shrink and expand (`{GPU}_SHRINK.json`, `{GPU}_EXPAND_TRUE.json`, vLLM's layout
  config[max_loras + 1][slices][rows][k][n]): a grid per layer and token count, decode and
  prefill sizes; a setting must beat vLLM's default and give its output (2%), else the default
  stays;
- loramux's masked expand (`masked_expand.json`) and fused kernel (`fused.json`) by batch rows,
  each checked against vLLM's kernels' output.
Kernels are compiled first in worker processes (Triton's disk cache), then timed one by one in
CUDA graphs, as vLLM runs them. `quick` searches small grids within a time budget (about 3
minutes on an H200); what is left when the budget runs out keeps the defaults. The folder is
written whole or not at all.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loramux.errors import EngineUnavailableError
from loramux.serve import kernel_tables
from loramux.serve.kernel_cases import Case, ModelShape, force_vllm_config, graph_time, parse_shape

VLLM_TOKENS = (16, 64, 128, 256, 1024, 4096)
ROWS = (16, 32, 64, 128, 256)
"""Batch rows the masked and fused tables cover (decode; larger batches use vLLM's kernels)."""


@dataclass
class TuneOptions:
    """What `loramux kernels tune` searches and where it saves."""

    out: Path
    quick: bool = False
    shape: str = "8b"
    rank: int = 16
    max_loras: int = 16
    budget_s: float | None = None
    """Stop searching after this long (default: 170 s quick, none otherwise)."""
    one_launch: bool = True
    """Try the fused kernel's one-launch form (else only its two-launch form)."""
    workers: int = field(default_factory=lambda: max(1, (os.cpu_count() or 2) - 2))


def vllm_space(op: str, quick: bool) -> list[dict[str, Any]]:
    """Launch settings tried for vLLM's `shrink` or `expand`."""
    grid: tuple[tuple[int, ...], ...]
    if op == "shrink":
        grid = (
            ((16, 32, 64), (64, 128, 256), (4, 8, 16, 32), (4,), (2,))
            if quick
            else ((16, 32, 64), (32, 64, 128, 256), (1, 4, 8, 16, 32, 64), (4,), (2, 3))
        )
        return [
            {"block_m": bm, "block_n": 16, "block_k": bk, "split_k": sk, "num_warps": w,
             "num_ctas": 1, "num_stages": st, "group_size_m": 8, "max_nreg": None}
            for bm, bk, sk, w, st in itertools.product(*grid)
        ]  # fmt: skip
    grid = (
        ((16, 32, 64, 128), (32, 64, 128), (4,), (2,))
        if quick
        else ((16, 32, 64, 128), (32, 64, 128, 256), (2, 4, 8), (1, 2, 3))
    )
    return [
        {"block_m": bm, "block_n": bn, "block_k": 16, "num_warps": w, "num_ctas": 1,
         "num_stages": st, "max_nreg": None}
        for bm, bn, w, st in itertools.product(*grid)
    ]  # fmt: skip


def masked_space(rows: int, quick: bool) -> list[dict[str, int]]:
    """Launch settings tried for the masked expand at `rows` rows."""
    bms = [b for b in (16, 32, 64, 128) if b <= max(16, rows)][-2:]
    grid = (bms, (32, 64) if quick else (32, 64, 128), (2, 4), (1,) if quick else (1, 2), (4,))
    return [
        {"block_m": bm, "block_n": bn, "slots": sl, "num_stages": st, "num_warps": w}
        for bm, bn, sl, st, w in itertools.product(*grid)
    ]


def fused_shrink_space(rows: int, quick: bool) -> list[dict[str, int]]:
    bms = (16,) if rows <= 16 else (16, 32)
    grid = (bms, (64,) if quick else (64, 128), (8, 16, 32), (128,) if quick else (128, 256))
    return [
        {"bm_s": bm, "bk": bk, "split_k": sk, "bc_s": bc}
        for bm, bk, sk, bc in itertools.product(*grid)
    ]


def fused_expand_space(rows: int, quick: bool) -> list[dict[str, int]]:
    bms = [b for b in (16, 32, 64, 128) if b <= max(16, rows)][-3:]
    grid = (bms, (32, 64, 128), (64,), (2,) if quick else (1, 2), (4,) if quick else (4, 8))
    return [
        {"bm_e": bm, "bn": bn, "bc_e": bc, "num_stages": st, "num_warps": w}
        for bm, bn, bc, st, w in itertools.product(*grid)
    ]


# -- compiling in worker processes ---------------------------------------------------------------

_CASES: dict[tuple[Any, ...], Case] = {}


def _case(shape: ModelShape, module: str, tokens: int, mix: int, rank: int, loras: int) -> Case:
    key = (shape.name, module, tokens, mix, rank, loras)
    if key not in _CASES:
        k, slices = shape.modules[module]
        _CASES[key] = Case(k, slices, tokens, mix, rank=rank, max_loras=loras)
    return _CASES[key]


def _run_once(case: Case, what: str, config: dict[str, Any] | None) -> None:
    if what in ("shrink", "expand"):
        force_vllm_config(what, config)
        buf = case.buffer()
        case.shrink(buf) if what == "shrink" else case.expand(buf)
        force_vllm_config(what, None)
    else:
        case.layer_fn(what, 0, config)()


def _compile(jobs: list[tuple[str, str, str, int, int, int, dict[str, Any]]]) -> int:
    """Worker: run each (kind, shape, module, tokens, rank, loras, config) once so that Triton
    compiles it into its disk cache; returns how many failed."""
    import torch

    failed = 0
    for what, spec, module, tokens, rank, loras, config in jobs:
        try:
            _run_once(_case(parse_shape(spec), module, tokens, 16, rank, loras), what, config)
            torch.cuda.synchronize()
        except Exception:
            failed += 1
    return failed


class Tuner:
    """One search: the shapes, the deadline, the pool of compiling workers, the log."""

    def __init__(self, opts: TuneOptions, pool: Any, log: Callable[[str], None]) -> None:
        self.opts, self.pool, self.log = opts, pool, log
        self.shape = parse_shape(opts.shape)
        budget = opts.budget_s if opts.budget_s is not None else (170.0 if opts.quick else None)
        self.deadline = time.monotonic() + budget if budget else float("inf")
        self.mixes = (1, opts.max_loras)
        self.report: list[dict[str, Any]] = []

    def late(self) -> bool:
        return time.monotonic() > self.deadline

    def cases(self, module: str, tokens: int) -> list[Case]:
        o = self.opts
        return [_case(self.shape, module, tokens, m, o.rank, o.max_loras) for m in self.mixes]

    def compile(self, jobs: list[tuple[str, str, int, dict[str, Any]]]) -> None:
        o = self.opts
        full = [(w, self.shape.name, m, t, o.rank, o.max_loras, c) for w, m, t, c in jobs]
        chunks = [full[i :: o.workers] for i in range(o.workers)]
        failed = sum(self.pool.map(_compile, [c for c in chunks if c]))
        if failed:
            self.log(f"  {failed} of {len(full)} settings did not compile (left out)")

    def fastest(
        self, module: str, tokens: int, what: str, space: list[Any], *, always: bool = False
    ) -> tuple[Any, float]:
        """The setting of `space` with the least time summed over the mixes, and that time;
        past the deadline none is tried unless `always`."""
        best, best_t = None, float("inf")
        for config in space:
            if self.late() and not always:
                break
            try:
                t = 0.0
                for case in self.cases(module, tokens):

                    def call(c: Case = case, cfg: Any = config) -> None:
                        _run_once(c, what, cfg)

                    t += graph_time(call, replays=3)
            except Exception:  # registers, shared memory: this setting does not run here
                continue
            if t < best_t:
                best, best_t = config, t
        force_vllm_config("shrink", None)
        force_vllm_config("expand", None)
        return best, best_t

    def differs(self, module: str, tokens: int, kind: str, config: Any) -> float:
        """Largest difference of `kind` with `config` from vLLM's default kernels, relative to
        the output's largest value, over the mixes."""
        worst = 0.0
        for case in self.cases(module, tokens):
            ref = case.output("vllm")
            if kind in ("shrink", "expand"):
                force_vllm_config(kind, config)
                got = case.output("vllm")
                force_vllm_config(kind, None)
            else:
                got = case.output(kind, config)
            worst = max(worst, float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-6)))
        return worst

    # -- the three tables ---------------------------------------------------------------------

    def vllm_tables(self) -> dict[str, dict[str, Any]]:
        from vllm.lora.ops.triton_ops.utils import get_lora_op_configs

        quick, rank, key = self.opts.quick, self.opts.rank, str(self.opts.max_loras + 1)
        spaces = {op: vllm_space(op, quick) for op in ("shrink", "expand")}
        self.compile(
            [(op, m, 128, c) for op, sp in spaces.items() for m in self.shape.modules for c in sp]
        )
        tables: dict[str, dict[str, Any]] = {"shrink": {}, "expand": {}}
        for module, (k, slices) in self.shape.modules.items():
            for tokens in VLLM_TOKENS:
                for op, space in spaces.items():
                    k_key, n_key = (k, rank) if op == "shrink" else (rank, max(slices))
                    default = dict(get_lora_op_configs(
                        op, self.opts.max_loras + 1, tokens, k_key if op == "shrink" else n_key,
                        rank, len(slices), add_inputs=True if op == "expand" else None,
                    ))  # fmt: skip
                    base = self.fastest(module, tokens, op, [default], always=True)[1]
                    best, t = self.fastest(module, tokens, op, space)
                    if best is None or t >= base or self.differs(module, tokens, op, best) > 0.02:
                        best, t = default, base
                    tables[op].setdefault(key, {}).setdefault(str(len(slices)), {}).setdefault(
                        str(tokens), {}
                    ).setdefault(str(k_key), {})[str(n_key)] = best
                    self.report.append({"table": f"vllm {op}", "module": module,
                                        "rows": tokens, "default_us": base, "tuned_us": t,
                                        "config": best})  # fmt: skip
                    self.log(f"  {op:6} {module:7} {tokens:5} rows: {base:7.1f} -> {t:7.1f} us")
        return tables

    def rows_table(
        self,
        kind: str,
        spaces: list[Callable[[int], list[dict[str, int]]]],
        start: Callable[[int], dict[str, int]],
    ) -> dict[str, dict[str, int]]:
        """A table by rows for loramux's `kind`: each space in turn refines the best so far
        (coordinate search), over every layer of the block; checked against vLLM's output."""
        table: dict[str, dict[str, int]] = {}
        for rows in ROWS:
            best = start(rows)
            for space_of in spaces:
                if self.late():  # what is left keeps the settings found so far
                    break
                trial = [{**best, **part} for part in space_of(rows)]
                self.compile([(kind, m, rows, c) for m in self.shape.modules for c in trial])
                totals = {}
                for i, config in enumerate(trial):
                    ts = [self.fastest(m, rows, kind, [config])[1] for m in self.shape.modules]
                    totals[i] = sum(ts)
                    if self.late():
                        break
                pick = min(totals, key=lambda j: totals[j], default=None)
                if pick is not None and totals[pick] < float("inf"):
                    best = trial[pick]
            worst = max(self.differs(m, rows, kind, best) for m in self.shape.modules)
            if worst > 0.02:
                raise EngineUnavailableError(
                    f"{kind} kernel differs from vLLM's by {worst:.3f} at {rows} rows with "
                    f"{best}: not saved (a bug; please report it)"
                )
            table[str(rows)] = best
            vllm_us = sum(
                graph_time(c.layer_fn("vllm"))
                for m in self.shape.modules
                for c in self.cases(m, rows)
            )
            mine_us = sum(
                graph_time(c.layer_fn(kind, 0, best))
                for m in self.shape.modules
                for c in self.cases(m, rows)
            )
            self.report.append(
                {"table": kind, "rows": rows, "vllm_us": vllm_us, "tuned_us": mine_us,
                 "config": best, "max_rel_diff": worst}
            )  # fmt: skip
            self.log(
                f"  {kind:6} {rows:4} rows: block's LoRA {vllm_us:7.1f} us with vLLM's "
                f"kernels, {mine_us:7.1f} us ({best})"
            )
        return table


def tune(opts: TuneOptions, log: Callable[[str], None]) -> Path:
    """Search and save the table folder for this GPU at `opts.out`.

    Returns:
        The folder written.

    Raises:
        EngineUnavailableError: no CUDA GPU or no vLLM here; a kernel gave a wrong output.
    """
    try:
        import torch
        import vllm  # noqa: F401 - its kernels are tuned
    except ImportError as exc:
        raise EngineUnavailableError(
            f"`loramux kernels tune` needs torch and vLLM on a CUDA GPU ({exc})"
        ) from exc
    if not torch.cuda.is_available():
        raise EngineUnavailableError(
            "`loramux kernels tune` needs a CUDA GPU; this machine has none"
        )
    from loramux.serve import lora_expand, lora_fused

    device = torch.cuda.get_device_name()
    slug = kernel_tables.device_slug(device)
    # tune against the defaults, whatever table a previous run left
    os.environ[kernel_tables.IN_USE_ENV] = ""
    os.environ.pop("VLLM_TUNED_CONFIG_FOLDER", None)
    t0 = time.monotonic()
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(opts.workers, mp_context=ctx) as pool:
        tuner = Tuner(opts, pool, log)
        log(f"tuning on {device}, shape {opts.shape}, rank {opts.rank}, {opts.max_loras} slots")
        log("vLLM's shrink and expand")
        vllm_tables = tuner.vllm_tables()
        log("loramux's masked expand")
        masked = tuner.rows_table(
            "masked", [lambda r: masked_space(r, opts.quick)],
            lambda r: dict(lora_expand.DEFAULT_CONFIG),
        )  # fmt: skip
        log("loramux's fused shrink + expand")
        fused = tuner.rows_table(
            "fused",
            [
                lambda r: fused_shrink_space(r, opts.quick),
                lambda r: fused_expand_space(r, opts.quick),
                lambda r: [{"launches": 1}, {"launches": 2}] if opts.one_launch else [],
            ],
            lambda r: {**lora_fused.DEFAULT_CONFIG, "bm_e": min(64, max(16, r))},
        )  # fmt: skip
    meta = {"gpu": device, "shape": opts.shape, "rank": opts.rank, "max_loras": opts.max_loras,
            "quick": opts.quick, "seconds": round(time.monotonic() - t0)}  # fmt: skip
    files = {
        f"{slug}_SHRINK.json": vllm_tables["shrink"],
        f"{slug}_EXPAND_TRUE.json": vllm_tables["expand"],
        lora_expand.TABLE: {**meta, "configs": masked},
        lora_fused.TABLE: {**meta, "configs": fused},
        "tune_report.json": {**meta, "rows": tuner.report},
    }
    save_folder(opts.out, files, device)
    log(f"saved {opts.out} in {time.monotonic() - t0:.0f} s")
    return opts.out


def save_folder(out: Path, files: dict[str, Any], device: str) -> None:
    """Write `files` (name -> JSON) as the folder `out`, replacing it whole: a half-written
    folder is never seen (written beside it, checked, then renamed into place)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, content in files.items():
        (tmp / name).write_text(json.dumps(content, indent=1), encoding="utf-8")
    kernel_tables.check_folder(tmp, device)
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)

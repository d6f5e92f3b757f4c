"""Which folder of multi-LoRA kernel tables serves this GPU, and reading the tables in it.

A table folder holds the launch settings of the LoRA kernels for one GPU model:
`{GPU}_SHRINK.json` and `{GPU}_EXPAND_TRUE.json` / `_EXPAND_FALSE.json` (vLLM's format, read by
vLLM through `VLLM_TUNED_CONFIG_FOLDER`; `{GPU}` is the device name with spaces and dashes made
underscores, as vLLM names them), `masked_expand.json` and `fused.json` (loramux's kernels, by
batch rows). `loramux kernels tune` writes one; loramux ships some.

The folder for the current GPU, first that applies (`choose`):
1. `engine.vllm.lora_kernel_configs: <folder>` (or `none`, `builtin`) in the config;
2. `LORAMUX_KERNEL_TABLES=<folder>` (or `none`): explicit, refused if unusable;
3. `~/.cache/loramux/kernels/<GPU>/` (`$XDG_CACHE_HOME` if set): the user's own, from
   `loramux kernels tune`;
4. `serve/lora_kernels/<GPU>/`: the tables loramux ships;
5. none: vLLM's default settings and loramux's.
A folder given explicitly may also be a root holding `<GPU>/` folders. Tables are checked before
the engine starts: a broken one is refused with its file named, never skipped.

vLLM's engine core (a child process) reads the choice from `LORAMUX_KERNEL_FOLDER_IN_USE`, which
`vllm_setup` sets before the engine starts, so both processes use the same tables.

Nothing here imports torch or vLLM at module level.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loramux.errors import ConfigError

logger = logging.getLogger(__name__)

ENV = "LORAMUX_KERNEL_TABLES"
IN_USE_ENV = "LORAMUX_KERNEL_FOLDER_IN_USE"
"""Set by `vllm_setup` for vLLM's engine core: the chosen folder, or empty for none."""
LEGACY_ENV = "LORAMUX_MASKED_EXPAND_CONFIGS"
SHIPPED_ROOT = Path(__file__).with_name("lora_kernels")
VLLM_OPS = ("SHRINK", "EXPAND_TRUE", "EXPAND_FALSE")
VLLM_FIELDS = {
    "SHRINK": {"block_m", "block_n", "block_k", "split_k", "num_warps", "num_ctas", "num_stages"},
    "EXPAND": {"block_m", "block_n", "block_k", "num_warps", "num_ctas", "num_stages"},
}
"""The fields vLLM 0.26's `lora_shrink` / `lora_expand` read from a config entry."""
LORAMUX_TABLES = {
    "masked_expand.json": {"block_m", "block_n", "slots", "num_warps", "num_stages"},
    "fused.json": {
        "launches", "bm_s", "bk", "split_k", "bc_s", "bm_e", "bn", "bc_e", "num_warps",
        "num_stages",
    },
}  # fmt: skip
"""loramux's tables and the settings each entry must have."""


@dataclass(frozen=True)
class Choice:
    """The table folder for a GPU, where it came from and why (for the log and `kernels show`)."""

    folder: Path | None
    source: str
    """`config`, `env`, `user`, `shipped` or `none`."""
    reason: str
    device: str | None


def device_slug(name: str) -> str:
    """The device name as vLLM puts it in its table file names (`NVIDIA H100 80GB HBM3` ->
    `NVIDIA_H100_80GB_HBM3`)."""
    return name.replace(" ", "_").replace("-", "_")


def device_name() -> str | None:
    """The CUDA GPU's name (device 0 as this process sees it), or None without one. Asks
    vLLM's platform (NVML, which leaves CUDA uninitialised for vLLM's workers) when vLLM is
    installed, else torch."""
    try:
        from vllm.platforms import current_platform

        if current_platform.is_cuda():
            return str(current_platform.get_device_name())
        if current_platform.is_cpu():
            return None
    except Exception:  # noqa: S110 - no vLLM, or one that does not import: ask torch
        pass
    try:
        import torch

        return str(torch.cuda.get_device_name()) if torch.cuda.is_available() else None
    except Exception:
        return None


def user_root() -> Path:
    """Where `loramux kernels tune` saves tables: `~/.cache/loramux/kernels/`."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "loramux" / "kernels"


def device_folder(root: Path, device: str) -> Path:
    """`root/<GPU>/` when it exists (a root of several GPUs' folders), else `root` itself."""
    sub = root / device_slug(device)
    return sub if sub.is_dir() else root


def choose(setting: str | Path = "auto", device: str | None = None) -> Choice:
    """The table folder for `device` (default: this machine's GPU); see the module docstring.

    Args:
        setting: `engine.vllm.lora_kernel_configs`: `auto`, `builtin`, `none` or a folder.
        device: the GPU's name, None to ask this machine.

    Raises:
        ConfigError: an explicit folder (or the user's) is missing or holds a bad table;
            `LORAMUX_MASKED_EXPAND_CONFIGS` is set (no longer read).
    """
    if os.environ.get(LEGACY_ENV):
        raise ConfigError(
            f"{LEGACY_ENV} is no longer read: put the masked_expand.json into a table folder and "
            f"set {ENV}=<folder>, or run `loramux kernels tune`"
        )
    device = device if device is not None else device_name()
    if device is None:
        return Choice(None, "none", "no CUDA GPU here: default launch settings", None)
    key = "engine.vllm.lora_kernel_configs"
    if setting == "none":
        return Choice(None, "config", f"{key}: none: default launch settings", device)
    if isinstance(setting, Path):
        folder = device_folder(setting, device)
        check_folder(folder, device, origin=f"{key}: {setting}")
        return Choice(folder, "config", f"{key}: {setting}", device)
    shipped = SHIPPED_ROOT / device_slug(device)
    if setting == "builtin":
        if not shipped.is_dir():
            raise ConfigError(
                f"{key}: builtin: loramux ships no kernel tables for {device} (it has "
                f"{', '.join(shipped_devices()) or 'none'}); run `loramux kernels tune`, or use "
                "`auto` (the default)"
            )
        return Choice(shipped, "shipped", f"{key}: builtin: shipped for {device}", device)
    env = os.environ.get(ENV)
    if env:
        if env.lower() == "none":
            return Choice(None, "env", f"{ENV}=none: default launch settings", device)
        folder = device_folder(Path(env).expanduser(), device)
        check_folder(folder, device, origin=f"{ENV}={env}")
        return Choice(folder, "env", f"{ENV}={env}", device)
    mine = user_root() / device_slug(device)
    if mine.is_dir():
        check_folder(mine, device, origin=f"{mine} (from `loramux kernels tune`; tune again or "
                     "delete it)")  # fmt: skip
        return Choice(mine, "user", "tuned on this machine by `loramux kernels tune`", device)
    if shipped.is_dir():
        return Choice(shipped, "shipped", f"the tables loramux ships for {device}", device)
    return Choice(
        None, "none",
        f"no tables for {device}: default launch settings (`loramux kernels tune` makes some)",
        device,
    )  # fmt: skip


def shipped_devices() -> list[str]:
    """The GPUs loramux ships tables for (their folder names)."""
    if not SHIPPED_ROOT.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_ROOT.iterdir() if p.is_dir())


def check_folder(folder: Path, device: str, origin: str = "") -> list[str]:
    """Refuse a folder that has no usable table for `device`, or any broken one.

    Returns:
        The names of the tables found for `device`.

    Raises:
        ConfigError: names the folder (as `origin` gave it) and the file at fault.
    """
    where = origin or str(folder)
    if not folder.is_dir():
        raise ConfigError(f"{where}: {folder} is not a folder of kernel tables")
    slug = device_slug(device)
    found = []
    for op in VLLM_OPS:
        file = folder / f"{slug}_{op}.json"
        if file.is_file():
            _check_vllm_table(file, VLLM_FIELDS[op.split("_")[0]], where)
            found.append(file.name)
    for name, fields in LORAMUX_TABLES.items():
        file = folder / name
        if file.is_file():
            table = _read(file, where)
            gpu = table.get("gpu") if isinstance(table, dict) else None
            if gpu != device:
                raise ConfigError(f"{where}: {file} was tuned on {gpu}, this GPU is {device}")
            _check_rows(file, table, fields, where)
            found.append(name)
    if not found:
        others = sorted({p.name.rsplit("_SHRINK", 1)[0] for p in folder.glob("*_SHRINK.json")})
        hint = f" (it has tables for {', '.join(others)})" if others else ""
        raise ConfigError(f"{where}: {folder} holds no kernel table for {device}{hint}")
    return found


def _read(file: Path, where: str) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{where}: {file} is not readable JSON ({exc})") from exc


def _check_vllm_table(file: Path, fields: set[str], where: str) -> None:
    """vLLM indexes table[max_loras + 1][slices][rows][k][n] and reads `fields` there."""
    table = _read(file, where)
    leaves = 0
    for path, entry in _leaves(table, 5):
        if not isinstance(entry, dict) or not all(k.isdigit() for k in path):
            raise ConfigError(
                f"{where}: {file} is not vLLM's layout [max_loras][slices][rows][k][n] at "
                f"{'/'.join(path)}"
            )
        lacking = sorted(fields - set(entry))
        if lacking:
            raise ConfigError(f"{where}: {file} at {'/'.join(path)} lacks {', '.join(lacking)}")
        leaves += 1
    if not leaves:
        raise ConfigError(f"{where}: {file} holds no configs")


def _leaves(node: Any, depth: int, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if depth == 0:
        return [(path, node)]
    if not isinstance(node, dict) or not node:
        return [(path, None)]
    return [leaf for k, v in node.items() for leaf in _leaves(v, depth - 1, (*path, str(k)))]


def _check_rows(file: Path, table: Any, fields: set[str], where: str) -> None:
    configs = table.get("configs") if isinstance(table, dict) else None
    if not isinstance(configs, dict) or not configs:
        raise ConfigError(f"{where}: {file} has no configs")
    for rows, cfg in configs.items():
        if not str(rows).isdigit() or not isinstance(cfg, dict):
            raise ConfigError(f"{where}: {file}: entry {rows!r} is not rows -> settings")
        lacking = sorted(fields - set(cfg))
        if lacking:
            raise ConfigError(f"{where}: {file}: rows {rows} lack {', '.join(lacking)}")
        if not all(isinstance(cfg[k], int) and cfg[k] > 0 for k in fields):
            raise ConfigError(f"{where}: {file}: rows {rows}: settings must be positive integers")


# -- reading, in the process that runs the kernels ------------------------------------------------


def folder_in_use() -> Path | None:
    """The folder this process's kernels read: `LORAMUX_KERNEL_FOLDER_IN_USE` when set (vLLM's
    engine core), else `choose()`'s, worked out once."""
    handed = os.environ.get(IN_USE_ENV)
    if handed is not None:
        return Path(handed) if handed else None
    return _auto_folder()


@functools.cache
def _auto_folder() -> Path | None:
    return choose().folder


@functools.cache
def _entries(path: str) -> dict[int, dict[str, int]]:
    file = Path(path)
    if not file.is_file():
        return {}
    return {int(m): dict(c) for m, c in json.loads(file.read_text())["configs"].items()}


def entries(table: str) -> dict[int, dict[str, int]]:
    """Row count -> launch settings of loramux's `table` in the folder in use ({} without)."""
    folder = folder_in_use()
    return _entries(str(folder / table)) if folder is not None else {}


def pick(table: str, m: int, default: dict[str, int]) -> dict[str, int]:
    """The settings for a batch of `m` rows: the entry for the smallest row count >= m (else
    the largest), or `default` without a table."""
    found = entries(table)
    if not found:
        return dict(default)
    sizes = sorted(found)
    return dict(found[next((t for t in sizes if t >= m), sizes[-1])])


def rows_limit(table: str, default: int) -> int:
    """The most rows `table` covers (`default` without one): larger batches go to vLLM's
    kernels."""
    return max(entries(table), default=default)

"""The evaluation charts the dashboard shows: PNG files under one folder (`dashboard.eval_dir`).

Only plain files ending in `.png`, at most `MAX_DEPTH` folders down, whose every path part is a
plain name (letters, digits, `.`, `_`, `-`; no `..`, no hidden files) are listed or served.
Symbolic links are neither followed nor served, and the resolved path must stay inside the
folder, so a request can never read anything else on the server.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

MAX_DEPTH = 3
_PART = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Chart:
    path: str
    """Relative to the charts folder, with `/` between parts."""
    mtime: float
    size: int


def _plain(part: str) -> bool:
    return bool(_PART.match(part)) and ".." not in part


def list_charts(root: Path, *, limit: int = 48) -> list[Chart]:
    """The newest PNG charts under `root` (newest first); empty when the folder is missing."""
    found: list[Chart] = []
    root_depth = len(root.parts)
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        depth = len(here.parts) - root_depth
        dirs[:] = [d for d in dirs if _plain(d) and depth < MAX_DEPTH]
        for name in files:
            if not (name.endswith(".png") and _plain(name)):
                continue
            try:
                info = (here / name).lstat()
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                rel = (here / name).relative_to(root).as_posix()
                found.append(Chart(rel, info.st_mtime, info.st_size))
    found.sort(key=lambda c: (-c.mtime, c.path))
    return found[:limit]


def resolve_chart(root: Path, relpath: str) -> Path | None:
    """The file a chart path names, or None when it is not a chart this folder may serve."""
    parts = relpath.split("/")
    if not relpath.endswith(".png") or len(parts) > MAX_DEPTH + 1:
        return None
    if not all(_plain(p) for p in parts):
        return None
    candidate = root
    for part in parts:
        candidate = candidate / part
        try:
            mode = candidate.lstat().st_mode
        except OSError:
            return None
        if stat.S_ISLNK(mode):
            return None
    if not stat.S_ISREG(mode):
        return None
    try:
        candidate.resolve(strict=True).relative_to(root.resolve(strict=True))
    except (OSError, ValueError):
        return None
    return candidate

"""Versions of the fitted router, named by content like adapter versions, with one active.

A version folder is `<store>/versions/<id>/` holding `fitted.yaml` and `fitted.npz` (as
`persist.save_router` writes them); `<id>` is the first 16 hex digits of the sha256 of both files'
bytes, so the same fit is the same version and a version never changes. `<store>/ACTIVE` names
the version being served (written atomically); `<store>/history.jsonl` records every activation,
so `rollback` can go back to the one before. `router.fitted` may name the store folder instead of
a `fitted.yaml`: the gateway then serves the active version and swaps in a newly activated one
while serving (`gateway/router_reload.py`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loramux.errors import RouterNotFittedError
from loramux.fileio import atomic_write_text

ACTIVE = "ACTIVE"
HISTORY = "history.jsonl"
FITTED = "fitted.yaml"


@dataclass(frozen=True)
class RouterVersion:
    """One stored version: its id, folder, when it was written and what its fit measured."""

    id: str
    path: Path
    created: float
    note: str

    @property
    def fitted(self) -> Path:
        """Its `fitted.yaml`."""
        return self.path / FITTED


class RouterVersions:
    """The version store in `folder` (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def add(self, save: Callable[[Path], None], note: str = "") -> RouterVersion:
        """Store a fitted router: `save(path)` writes `fitted.yaml` (+ `.npz`) at `path`.

        Returns:
            The version (an existing one when the same files were stored before).
        """
        (self.folder / "versions").mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.folder / "versions", prefix=".new-"))
        try:
            save(tmp / FITTED)
            digest = hashlib.sha256()
            for name in sorted(p.name for p in tmp.iterdir()):
                digest.update(name.encode() + b"\0" + (tmp / name).read_bytes())
            vid = digest.hexdigest()[:16]
            final = self.folder / "versions" / vid
            if final.exists():
                shutil.rmtree(tmp)
            else:
                meta = {"id": vid, "created": round(time.time(), 3), "note": note}
                atomic_write_text(tmp / "version.json", json.dumps(meta) + "\n")
                tmp.rename(final)  # whole folder appears at once
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.get(vid)

    def get(self, vid: str) -> RouterVersion:
        """The version `vid` (a unique prefix is enough).

        Raises:
            RouterNotFittedError: no such version, or the prefix is ambiguous.
        """
        found = [v for v in self.versions() if v.id.startswith(vid)] if vid else []
        if len(found) != 1:
            known = ", ".join(v.id for v in self.versions()) or "none"
            what = "is ambiguous" if found else "is not stored"
            raise RouterNotFittedError(
                f"router version {vid!r} {what} in {self.folder}; versions: {known}"
            )
        return found[0]

    def versions(self) -> list[RouterVersion]:
        """Every stored version, oldest first."""
        folder = self.folder / "versions"
        out = []
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            meta_file = path / "version.json"
            if path.name.startswith(".") or not meta_file.is_file():
                continue
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            out.append(RouterVersion(path.name, path, float(meta["created"]), meta.get("note", "")))
        return sorted(out, key=lambda v: (v.created, v.id))

    def active(self) -> RouterVersion | None:
        """The version being served, or None before any activation."""
        marker = self.folder / ACTIVE
        if not marker.is_file():
            return None
        return self.get(marker.read_text(encoding="utf-8").strip())

    def activate(self, vid: str, reason: str = "activate") -> RouterVersion:
        """Make `vid` the served version (a running gateway swaps it in)."""
        version = self.get(vid)
        atomic_write_text(self.folder / ACTIVE, version.id + "\n")
        entry = {"at": round(time.time(), 3), "id": version.id, "reason": reason}
        with (self.folder / HISTORY).open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        return version

    def history(self) -> list[dict[str, Any]]:
        """Activations, oldest first."""
        path = self.folder / HISTORY
        if not path.is_file():
            return []
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a crash
        return rows

    def rollback(self, to: str | None = None) -> RouterVersion:
        """Activate `to`, or the version active before the current one.

        Raises:
            RouterNotFittedError: nothing to go back to.
        """
        if to is not None:
            return self.activate(to, reason="rollback")
        current = self.active()
        for entry in reversed(self.history()):
            if current is None or entry["id"] != current.id:
                return self.activate(str(entry["id"]), reason="rollback")
        raise RouterNotFittedError(
            f"no earlier router version to roll back to in {self.folder}; see "
            "`loramux router versions`"
        )


def is_store(path: Path) -> bool:
    """Whether `router.fitted` names a version store (a folder) rather than a `fitted.yaml`."""
    return path.is_dir()


def resolve_fitted(path: Path) -> Path:
    """The `fitted.yaml` to load for `router.fitted`: itself, or a store's active version.

    Raises:
        RouterNotFittedError: a store with no active version.
    """
    if not is_store(path):
        return path
    active = RouterVersions(path).active()
    if active is None:
        raise RouterNotFittedError(
            f"router version store {path} has no active version; fit one with "
            "`loramux router fit ... --out <store>` or activate one with `loramux router rollback "
            "--to ID`"
        )
    return active.fitted

"""The registry's adapter files: `<data_dir>/adapters/<name>/<version>/`, written crash-safely.

A registration first fills a private staging folder (`adapters/.staging/<random>/`), which is
checked there, then renamed into place in one atomic step; the registry writes its database rows
only after that. So at any crash there is either a leftover staging folder or a version folder
the database does not know: `cleanup` removes both at start. An exclusive file lock
(`adapters/.lock`) is held from staging to commit, so a cleanup in another process never
removes a registration in progress.

Uploaded archives are written to `adapters/.uploads/<pid>-<random>/` before registration and
removed when it ends, whatever the outcome; `cleanup` removes those of processes that are gone
(a crash, a kill -9), and the start of a process with the same pid (a container's pid 1).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from loramux.adapters.validation import check_files, check_size
from loramux.config import AdapterLimits
from loramux.errors import AdapterError

logger = logging.getLogger(__name__)

CHUNK = 1 << 20


class AdapterFiles:
    """Adapter version folders under one data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.root = data_dir / "adapters"
        self.staging_root = self.root / ".staging"
        self.uploads_root = self.root / ".uploads"

    def lock(self) -> IO[bytes]:
        """Take the registry's file lock (blocking); release it with `unlock`."""
        self.staging_root.mkdir(parents=True, exist_ok=True)
        handle = (self.root / ".lock").open("ab")
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        return handle

    @staticmethod
    def unlock(handle: IO[bytes]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()

    def new_staging(self) -> Path:
        """A fresh, empty staging folder (call with the lock held)."""
        self.staging_root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=self.staging_root))

    def new_upload(self) -> Path:
        """A fresh, empty folder for one uploaded archive, named for this process (remove it
        with `discard` when the registration ends)."""
        self.uploads_root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=self.uploads_root, prefix=f"{os.getpid()}-"))

    def copy_folder(self, source: Path, dest: Path, limits: AdapterLimits, *, name: str) -> Path:
        """Copy the top-level files of a PEFT folder into `dest` (subfolders are not copied).

        Returns:
            `dest`.

        Raises:
            AdapterError: `source` is not a folder, holds links or pickle files, or is too large.
        """
        if not source.is_dir():
            raise AdapterError(f"adapter {name!r}: {source} is not a folder")
        check_files(source, limits, name=name)
        total = 0
        for entry in sorted(source.iterdir()):
            if entry.is_symlink() or not entry.is_file():
                continue
            with entry.open("rb") as src, (dest / entry.name).open("xb") as out:
                size = 0
                while block := src.read(CHUNK):
                    size += len(block)
                    total += len(block)
                    check_size(name, entry.name, size, total, 0, limits)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
        return dest

    def version_dir(self, name: str, version: str) -> Path:
        """Where the files of a version live."""
        return self.root / name / version

    def publish(self, folder: Path, final: Path) -> Path:
        """Move a checked folder to its final place in one atomic rename (call with the lock).

        A folder already at `final` belongs to no registered version (the caller checked), so
        it is a leftover of a crash and is replaced.
        """
        _fsync_tree(folder)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            shutil.rmtree(final)
        os.rename(folder, final)
        _fsync_dir(final.parent)
        return final

    def relative(self, path: Path) -> str:
        """`path` relative to the data dir, as stored in the database."""
        return path.relative_to(self.data_dir).as_posix()

    def absolute(self, relative: str) -> Path:
        return self.data_dir / relative

    @staticmethod
    def discard(path: Path) -> None:
        """Remove a staging or unregistered version folder; missing is fine."""
        shutil.rmtree(path, ignore_errors=True)

    def cleanup(self, registered: Iterable[str] | Callable[[], Iterable[str]]) -> list[str]:
        """Remove staging leftovers and version folders the database does not know.

        Args:
            registered: relative paths (`adapters/<name>/<version>`) of registered versions, or
                a function that reads them, called once the registry's file lock is held (so a
                version another process registers meanwhile, sharing these files, is known).

        Returns:
            The relative paths removed.
        """
        removed: list[str] = []
        if not self.root.is_dir():
            return removed
        handle = self.lock()
        try:
            keep = set(registered() if callable(registered) else registered)
            for leftover in sorted(self.staging_root.iterdir()):
                self.discard(leftover)
                removed.append(self.relative(leftover))
            if self.uploads_root.is_dir():
                for upload in sorted(self.uploads_root.iterdir()):
                    if not _owner_alive(upload.name):
                        self.discard(upload)
                        removed.append(self.relative(upload))
            for adapter_dir in sorted(self.root.iterdir()):
                if adapter_dir.name.startswith(".") or not adapter_dir.is_dir():
                    continue
                for version_dir in sorted(adapter_dir.iterdir()):
                    rel = self.relative(version_dir)
                    if rel not in keep:
                        self.discard(version_dir)
                        removed.append(rel)
                if not any(adapter_dir.iterdir()):
                    adapter_dir.rmdir()
        finally:
            self.unlock(handle)
        for rel in removed:
            logger.warning("removed %s: left over from an interrupted registration or upload", rel)
        return removed


def _owner_alive(name: str) -> bool:
    """True when the upload folder `name` (`<pid>-...`) belongs to another running process."""
    pid_text = name.partition("-")[0]
    if not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False  # ours at start is from an earlier life of this pid: not in progress
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _fsync_tree(folder: Path) -> None:
    for entry in folder.iterdir():
        if entry.is_file():
            fd = os.open(entry, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

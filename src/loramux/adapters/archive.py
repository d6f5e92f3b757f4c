"""Safe extraction of an uploaded adapter archive (zip, tar, tar.gz) into a folder.

The archive holds a PEFT folder, its files at the root or inside one top-level folder. Every
member is checked before anything is written: relative paths only (no absolute path, no `..`,
no drive letter or backslash), regular files and folders only (no symlinks, hard links or
devices), and the number of files and the uncompressed size are bounded (`AdapterLimits`);
sizes are counted again while writing, so a member that lies about its size (a zip bomb) is
stopped at the limit. Nothing is executed and nothing is written outside the target folder.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from loramux.adapters.validation import check_size
from loramux.adapters.version import CONFIG_FILE
from loramux.config import AdapterLimits
from loramux.errors import AdapterTooLargeError, ArchiveError

CHUNK = 1 << 20
MEMBERS_PER_FILE = 4
"""Archive entries (files and folders) allowed per file of `max_files`: bounds folder entries."""


def extract_archive(archive: Path, dest: Path, limits: AdapterLimits, *, name: str) -> Path:
    """Extract `archive` into the empty folder `dest` and return the PEFT folder inside it.

    Args:
        archive: a zip or tar (optionally gzip/bz2/xz-compressed) file.
        dest: an empty folder to extract into (a staging folder; the caller removes it on error).
        limits: file count and size limits (uncompressed).
        name: the adapter's name, for messages.

    Returns:
        `dest` or its single top-level folder: the one holding adapter_config.json.

    Raises:
        ArchiveError: not an archive, an unsafe member, or no adapter folder inside.
        AdapterTooLargeError: over the count or size limits.
    """
    if zipfile.is_zipfile(archive):
        _extract_zip(archive, dest, limits, name)
    elif _is_tar(archive):
        _extract_tar(archive, dest, limits, name)
    else:
        raise ArchiveError(
            f"adapter {name!r}: the upload is not a zip or tar archive; send a .zip or .tar.gz "
            "of the PEFT folder"
        )
    return find_adapter_root(dest, name=name)


def find_adapter_root(dest: Path, *, name: str) -> Path:
    """The folder holding adapter_config.json: `dest` itself or its only top-level folder.

    Raises:
        ArchiveError: no adapter_config.json at either place.
    """
    if (dest / CONFIG_FILE).is_file():
        return dest
    entries = [e for e in dest.iterdir() if not e.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / CONFIG_FILE).is_file():
        return entries[0]
    raise ArchiveError(
        f"adapter {name!r}: the archive has no {CONFIG_FILE} at its root or in one top-level "
        "folder; archive the PEFT folder itself"
    )


def _is_tar(archive: Path) -> bool:
    try:
        return tarfile.is_tarfile(archive)
    except OSError:
        return False


def safe_member_path(member: str, *, name: str) -> PurePosixPath | None:
    """Check one member name; None for the archive's root entry (`./`).

    Raises:
        ArchiveError: absolute, escaping (`..`), or not portable.
    """
    if "\\" in member or "\x00" in member:
        raise ArchiveError(f"adapter {name!r}: archive member {member!r} has an unsafe name")
    path = PurePosixPath(member)
    if path.is_absolute() or (path.parts and ":" in path.parts[0]):
        raise ArchiveError(f"adapter {name!r}: archive member {member!r} has an absolute path")
    if ".." in path.parts:
        raise ArchiveError(
            f"adapter {name!r}: archive member {member!r} points outside the archive (..)"
        )
    parts = [p for p in path.parts if p != "."]
    if not parts:
        return None
    if len(parts) > 2:
        raise ArchiveError(
            f"adapter {name!r}: archive member {member!r} is nested too deep; put the PEFT "
            "files at the root or in one top-level folder"
        )
    return PurePosixPath(*parts)


def _extract_zip(archive: Path, dest: Path, limits: AdapterLimits, name: str) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            plan: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
            total = count = 0
            if len(infos) > MEMBERS_PER_FILE * limits.max_files:
                raise AdapterTooLargeError(
                    f"adapter {name!r}: the archive has {len(infos)} entries; a PEFT folder "
                    "needs only a few files"
                )
            for info in infos:
                target = safe_member_path(info.filename, name=name)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise ArchiveError(
                        f"adapter {name!r}: archive member {info.filename!r} is a symlink"
                    )
                if target is None or info.is_dir():
                    continue
                if info.flag_bits & 0x1:
                    raise ArchiveError(f"adapter {name!r}: {info.filename!r} is encrypted")
                count += 1
                total += info.file_size
                check_size(name, info.filename, info.file_size, total, count, limits)
                plan.append((info, target))
            written = 0
            for info, target in plan:
                with zf.open(info) as src:
                    written = _write(src, dest, target, limits, name, written)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ArchiveError(f"adapter {name!r}: the zip archive is unreadable: {exc}") from exc


def _extract_tar(archive: Path, dest: Path, limits: AdapterLimits, name: str) -> None:
    try:
        with tarfile.open(archive, mode="r:*") as tf:
            written = 0
            for member, target in _tar_plan(tf, limits, name):
                src = tf.extractfile(member)
                if src is None:
                    raise ArchiveError(f"adapter {name!r}: cannot read {member.name!r}")
                with src:
                    written = _write(src, dest, target, limits, name, written)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError(f"adapter {name!r}: the tar archive is unreadable: {exc}") from exc


def _tar_plan(
    tf: tarfile.TarFile, limits: AdapterLimits, name: str
) -> Iterator[tuple[tarfile.TarInfo, PurePosixPath]]:
    """Check every member (iterating reads headers only), then yield the files to write."""
    plan: list[tuple[tarfile.TarInfo, PurePosixPath]] = []
    total = count = members = 0
    for member in tf:
        members += 1
        if members > MEMBERS_PER_FILE * limits.max_files:
            raise AdapterTooLargeError(
                f"adapter {name!r}: the archive has over {members - 1} entries; a PEFT folder "
                "needs only a few files"
            )
        target = safe_member_path(member.name, name=name)
        if member.issym() or member.islnk():
            raise ArchiveError(
                f"adapter {name!r}: archive member {member.name!r} is a link; archive real files"
            )
        if not (member.isfile() or member.isdir()):
            raise ArchiveError(
                f"adapter {name!r}: archive member {member.name!r} is a device or special file"
            )
        if target is None or member.isdir():
            continue
        count += 1
        total += member.size
        check_size(name, member.name, member.size, total, count, limits)
        plan.append((member, target))
    yield from plan


def _write(
    src: IO[bytes], dest: Path, target: PurePosixPath, limits: AdapterLimits, name: str, total: int
) -> int:
    """Copy one member, counting real bytes against the limits; returns the new total."""
    out = dest.joinpath(*target.parts)
    out.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    if out.exists():
        raise ArchiveError(f"adapter {name!r}: the archive holds {str(target)!r} twice")
    with out.open("xb") as fh:
        while block := src.read(CHUNK):
            size += len(block)
            total += len(block)
            check_size(name, str(target), size, total, 0, limits)
            fh.write(block)
    return total


def save_upload(src: IO[bytes], dest: Path, limits: AdapterLimits, *, name: str) -> Path:
    """Write an uploaded archive to `dest`, refusing it once over `limits.max_total_bytes`.

    A failed write (too large, a read or disk error) leaves no file at `dest`.

    Raises:
        AdapterTooLargeError: the upload is larger than an adapter may be.
    """
    size = 0
    try:
        with dest.open("xb") as out:
            while block := src.read(CHUNK):
                size += len(block)
                if size > limits.max_total_bytes:
                    raise AdapterTooLargeError(
                        f"adapter {name!r}: the upload is over {limits.max_total_bytes} bytes "
                        "(registry.limits.max_total_bytes)"
                    )
                out.write(block)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return dest

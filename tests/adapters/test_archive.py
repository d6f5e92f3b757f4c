"""Adapter archives are extracted safely: no escaping paths, no links or devices, no bombs; an
uploaded archive leaves no file behind, even after a crash (removed at the next start)."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from loramux.adapters.archive import extract_archive, save_upload
from loramux.adapters.filestore import AdapterFiles
from loramux.config import AdapterLimits
from loramux.errors import AdapterError, AdapterTooLargeError, ArchiveError
from tests.builders import write_lora_folder

LIMITS = AdapterLimits()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info in members:
            payload = data.get(info.name)
            tf.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _adapter_files(tmp_path: Path) -> dict[str, bytes]:
    folder = write_lora_folder(tmp_path / "src")
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _extract(archive: Path, tmp_path: Path, limits: AdapterLimits = LIMITS) -> Path:
    dest = tmp_path / "out"
    dest.mkdir(exist_ok=True)
    return extract_archive(archive, dest, limits, name="hr")


@pytest.mark.parametrize("prefix", ["", "hr-v2/", "./"])
def test_zip_of_a_peft_folder_is_extracted(tmp_path: Path, prefix: str) -> None:
    files = _adapter_files(tmp_path)
    root = _extract(_zip(tmp_path / "a.zip", {prefix + k: v for k, v in files.items()}), tmp_path)
    assert sorted(p.name for p in root.iterdir()) == sorted(files)
    assert (root / "adapter_model.safetensors").read_bytes() == files["adapter_model.safetensors"]


@pytest.mark.parametrize("prefix", ["", "hr-v2/"])
def test_tar_gz_of_a_peft_folder_is_extracted(tmp_path: Path, prefix: str) -> None:
    files = _adapter_files(tmp_path)
    members = [_file(prefix + k, v) for k, v in files.items()]
    archive = _tar(tmp_path / "a.tgz", [m for m, _ in members], {m.name: d for m, d in members})
    root = _extract(archive, tmp_path)
    assert sorted(p.name for p in root.iterdir()) == sorted(files)


@pytest.mark.parametrize(
    ("member", "words"),
    [
        ("../evil.json", "outside the archive"),
        ("hr/../../evil.json", "outside the archive"),
        ("/etc/evil.json", "absolute path"),
        ("C:/evil.json", "absolute path"),
        ("hr\\..\\evil.json", "unsafe name"),
        ("a/b/c/adapter_config.json", "nested too deep"),
    ],
)
def test_zip_path_traversal_is_refused(tmp_path: Path, member: str, words: str) -> None:
    files = _adapter_files(tmp_path)
    archive = _zip(tmp_path / "a.zip", {**files, member: b"{}"})
    with pytest.raises(ArchiveError, match=words):
        _extract(archive, tmp_path)
    assert not (tmp_path / "evil.json").exists()
    assert not any((tmp_path / "out").iterdir()), "nothing is written before the checks pass"


def test_tar_path_traversal_is_refused(tmp_path: Path) -> None:
    info, data = _file("../../evil.json", b"{}")
    with pytest.raises(ArchiveError, match="outside the archive"):
        _extract(_tar(tmp_path / "a.tgz", [info], {info.name: data}), tmp_path)
    assert not (tmp_path / "evil.json").exists()


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        (tarfile.SYMTYPE, "is a link"),
        (tarfile.LNKTYPE, "is a link"),
        (tarfile.CHRTYPE, "device or special"),
        (tarfile.FIFOTYPE, "device or special"),
    ],
)
def test_links_and_devices_in_tar_are_refused(tmp_path: Path, kind: bytes, words: str) -> None:
    files = _adapter_files(tmp_path)
    members = [_file(k, v) for k, v in files.items()]
    link = tarfile.TarInfo("adapter_model.bin")
    link.type = kind
    link.linkname = "/etc/passwd"
    archive = _tar(
        tmp_path / "a.tgz", [*(m for m, _ in members), link], {m.name: d for m, d in members}
    )
    with pytest.raises(ArchiveError, match=words):
        _extract(archive, tmp_path)


def test_symlink_in_zip_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("adapter_model.safetensors")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ArchiveError, match="symlink"):
        _extract(archive, tmp_path)


def test_zip_bomb_is_stopped_at_the_size_limit(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "bomb.zip", {"adapter_model.safetensors": b"\0" * (8 << 20)})
    assert archive.stat().st_size < 64 << 10  # compresses > 100x
    with pytest.raises(AdapterTooLargeError, match="max_file_bytes"):
        _extract(archive, tmp_path, AdapterLimits(max_file_bytes=1 << 20))
    assert not (tmp_path / "out" / "adapter_model.safetensors").exists()


def test_too_many_members_are_refused(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "many.zip", {f"f{i}.json": b"{}" for i in range(40)})
    with pytest.raises(AdapterTooLargeError, match="max_files"):
        _extract(archive, tmp_path)
    tar_members = [_file(f"f{i}.json", b"{}") for i in range(40)]
    tgz = _tar(
        tmp_path / "many.tgz", [m for m, _ in tar_members], {m.name: d for m, d in tar_members}
    )
    with pytest.raises(AdapterTooLargeError, match="max_files"):
        _extract(tgz, tmp_path)


def test_archives_without_an_adapter_folder_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"hello, not an archive")
    with pytest.raises(ArchiveError, match="not a zip or tar"):
        _extract(junk, tmp_path)
    two = _zip(tmp_path / "two.zip", {"a/adapter_config.json": b"{}", "b/x.json": b"{}"})
    dest = tmp_path / "two"
    dest.mkdir()
    with pytest.raises(ArchiveError, match="no adapter_config.json"):
        extract_archive(two, dest, LIMITS, name="hr")


def test_duplicate_members_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "dup.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("adapter_config.json", "{}")
        with pytest.warns(UserWarning, match="Duplicate"):
            zf.writestr("adapter_config.json", "{}")
    with pytest.raises(ArchiveError, match="twice"):
        _extract(archive, tmp_path)


def test_uploads_over_the_limit_are_refused(tmp_path: Path) -> None:
    with pytest.raises(AdapterTooLargeError, match="upload is over"):
        save_upload(
            io.BytesIO(b"x" * 5000), tmp_path / "up", AdapterLimits(max_total_bytes=4096), name="hr"
        )
    assert issubclass(ArchiveError, AdapterError)


def test_a_refused_upload_leaves_no_file(tmp_path: Path) -> None:
    dest = tmp_path / "up"
    with pytest.raises(AdapterTooLargeError):
        save_upload(io.BytesIO(b"x" * 5000), dest, AdapterLimits(max_total_bytes=4096), name="hr")
    assert not dest.exists()


def test_start_up_removes_uploads_of_processes_that_are_gone(tmp_path: Path) -> None:
    files = AdapterFiles(tmp_path)
    ours = files.new_upload()  # at start, ours are from an earlier life of this pid
    (ours / "upload").write_bytes(b"x" * 1000)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = files.uploads_root / f"{dead.pid}-abc"
    gone.mkdir()
    (gone / "upload").write_bytes(b"x")
    alive = files.uploads_root / f"{os.getppid()}-def"  # our parent runs: its upload may be live
    alive.mkdir()
    removed = files.cleanup([])
    assert sorted(removed) == sorted(files.relative(p) for p in (ours, gone))
    assert [p.name for p in files.uploads_root.iterdir()] == [alive.name]


def test_start_up_reads_what_is_registered_only_once_it_holds_the_files_lock(
    tmp_path: Path,
) -> None:
    """A gateway starting while another (sharing the adapter files) registers a version must
    not take that version's folder for a leftover: it reads the registry under the lock."""
    import threading
    import time

    files = AdapterFiles(tmp_path)
    version = files.version_dir("hr", "abc123")
    version.mkdir(parents=True)
    (version / "adapter_model.safetensors").write_bytes(b"x")
    held = files.lock()  # the other gateway is registering
    registered: list[str] = []
    read_at: list[float] = []

    def read() -> list[str]:
        read_at.append(time.monotonic())
        return registered

    worker = threading.Thread(target=files.cleanup, args=(read,))
    worker.start()
    time.sleep(0.2)
    assert read_at == []  # still waiting for the lock
    registered.append(files.relative(version))  # the other gateway commits, then unlocks
    released = time.monotonic()
    files.unlock(held)
    worker.join(timeout=10)
    assert read_at
    assert read_at[0] >= released
    assert (version / "adapter_model.safetensors").is_file()

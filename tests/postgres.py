"""A real PostgreSQL server for tests and benchmarks: Debian's `postgresql` binaries, `initdb` +
`pg_ctl` in a temporary folder, listening only on a unix socket in that folder (and on a free
loopback port, for clients that want TCP).

initdb refuses to run as root; as root the server runs as the unprivileged `postgres` user
(Debian's package makes it) or else `nobody`, through `runuser`. Where no binaries are found
`find_bin_dir` returns None and the tests that need the server skip, unless
LORAMUX_REQUIRE_POSTGRES=1 (then they fail: `make test` sets it after installing the package).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.serve_process import free_port


def find_bin_dir() -> Path | None:
    """The folder holding initdb and pg_ctl (PATH first, then Debian's versioned folders)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "initdb").is_file():
            return Path(folder)
    return None


def _run_as() -> str | None:
    """Who runs the server when we are root (None: ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("running as root and no unprivileged user (postgres, nobody) to run initdb")


class PostgresServer:
    """One throwaway PostgreSQL cluster; `dsn(db)` connects to a database of it."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.user = _run_as()
        # Not under pytest's tmp_path: its parents are root-only, the server user must reach it.
        self.root = Path(tempfile.mkdtemp(prefix="loramux-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        if self.user is not None:
            shutil.chown(self.root, self.user)
        self._cmd(
            ["initdb", "-D", str(self.data), "-U", "loramux", "-A", "trust", "-E", "UTF8"]
            + ["--no-sync", "--no-instructions"]
        )
        self.start()

    def start(self) -> None:
        """Start the server (again, after `pause`: same data, same port)."""
        opts = (
            f"-k {self.root} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._cmd(
            ["pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "log")]
            + ["-w", "-t", "60", "start"]
        )

    def pause(self) -> None:
        """Stop the server, keeping its data (an outage); `start` brings it back."""
        self._cmd(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"])

    def _cmd(self, args: Sequence[str]) -> None:
        argv = [str(self.bin_dir / args[0]), *args[1:]]
        if self.user is not None:
            argv = ["runuser", "-u", self.user, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = self.root / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:1])} failed: {done.stderr.strip()}\n{tail}")

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq DSN over the unix socket."""
        return f"host={self.root} port={self.port} user=loramux dbname={dbname}"

    def url(self, dbname: str) -> str:
        """A postgresql:// URL over loopback TCP (what LORAMUX_DATABASE_URL usually holds)."""
        return f"postgresql://loramux@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its name."""
        import psycopg

        name = f"{prefix}_{secrets.token_hex(4)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def stop(self) -> None:
        try:
            self._cmd(["pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

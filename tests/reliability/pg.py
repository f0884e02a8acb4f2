"""A private, throwaway PostgreSQL server for tests that must restart their database.

The machine's shared cluster serves other tests, so it is never stopped: this module runs
``initdb`` into a temporary directory and ``pg_ctl`` on a free loopback port, as the ``postgres``
user when the tests run as root (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.conftest import free_port


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/*/bin (or PATH) that has initdb and pg_ctl; None when there is none."""
    def version(bindir: str) -> int:
        name = Path(bindir).parent.name
        return int(name) if name.isdigit() else 0

    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if os.access(os.path.join(d, "initdb"), os.X_OK) and os.access(os.path.join(d, "pg_ctl"), os.X_OK):
            return Path(d)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    return None


class PrivatePostgres:
    """``initdb`` + ``pg_ctl`` in a temporary directory; trust auth, fsync off, unix socket in the same directory."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.run_as: list[str] = []
        owner = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise RuntimeError("running as root and there is no 'postgres' user to run PostgreSQL as") from exc
            self.run_as = ["runuser", "-u", "postgres", "--"]
        self.root = Path(tempfile.mkdtemp(prefix="dispatcher-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        if owner is not None:
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.port = free_port()
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync",
                 timeout=60)
        self.start()

    def _pg(self, tool: str, *args: str, timeout: float = 30) -> None:
        r = subprocess.run([*self.run_as, str(self.bindir / tool), *args], capture_output=True, text=True,
                           timeout=timeout, cwd=self.root)
        if r.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({r.returncode}): {r.stdout}{r.stderr}\n"
                               f"{self.log.read_text() if self.log.exists() else ''}")

    def start(self) -> None:
        opts = f"-F -p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def restart(self, down_for: float) -> None:
        """Stop (fast: open sessions are terminated), stay down ``down_for`` seconds, start again."""
        self.stop("fast")
        time.sleep(down_for)
        self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        admin = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return self.url(name)

    def destroy(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

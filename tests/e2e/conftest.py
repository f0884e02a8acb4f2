"""End-to-end fixtures: real Celery worker processes, the CLI as a user runs it, real Redis and databases."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import ROOT, TEST_POSTGRES_URL

BIN = Path(sys.executable).parent
SECRET_ENV = {
    "DROPCOWBOY_TEAM_ID": "e2e-team-7f3a9c",
    "DROPCOWBOY_SECRET": "e2e-dc-secret-91b2d4e8",
    "DRIPCEL_API_KEY": "e2e-dripcel-key-5c6d7e8f",
    "SKYCORE_API_KEY": "e2e-skycore-key-0a1b2c3d",
    "FONEDYNAMICS_ACCOUNT_SID": "ACe2e0000000000000000000000000001",
    "FONEDYNAMICS_AUTH_TOKEN": "e2e-fone-token-4e5f6a7b",
}


class Env:
    """The environment a user's shell would have: one database, one Redis, the sandbox URL, credentials."""

    def __init__(self, tmp: Path, redis_url: str, database_url: str, sandbox_url: str) -> None:
        self.tmp = tmp
        self.vars = {**os.environ, **SECRET_ENV, "REDIS_URL": redis_url, "DATABASE_URL": database_url,
                     "SANDBOX_URL": sandbox_url, "STALE_AFTER": "5", "PYTHONUNBUFFERED": "1",
                     "COLUMNS": "220"}
        self.workers: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def cli(self, *args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([str(BIN / "dispatcher"), *args], cwd=self.tmp, env=self.vars, capture_output=True,
                           text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"dispatcher {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def start_worker(self, concurrency: int = 2, name: str | None = None, extra: list[str] | None = None) -> subprocess.Popen[bytes]:
        n = len(self.workers)
        log = self.tmp / f"worker{n}.log"
        self.logs.append(log)
        p = subprocess.Popen(
            [str(BIN / "celery"), "-A", "workers.app", "worker", "-c", str(concurrency), "-l", "info",
             "-n", name or f"w{n}-{os.getpid()}@%h", "--without-gossip", "--without-mingle", *(extra or [])],
            cwd=ROOT, env=self.vars, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        self.workers.append(p)
        return p

    def start_beat(self) -> subprocess.Popen[bytes]:
        log = self.tmp / "beat.log"
        self.logs.append(log)
        p = subprocess.Popen([str(BIN / "celery"), "-A", "workers.app", "beat", "-l", "info", "-s", str(self.tmp / "beat.db")],
                             cwd=ROOT, env=self.vars, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        self.workers.append(p)
        return p

    def stop(self, p: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)

    def stop_all(self) -> None:
        for p in self.workers:
            self.stop(p)

    def output(self) -> str:
        return "\n".join(log.read_text(errors="replace") for log in self.logs if log.exists())


def wait_until(check, timeout: float = 60.0, interval: float = 0.2, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'dispatcher.db'}"
        return
    if os.environ.get("DISPATCHER_SKIP_POSTGRES") == "1":
        pytest.skip("DISPATCHER_SKIP_POSTGRES=1")
    from tests.store_utils import fresh_postgres

    with fresh_postgres() as url:
        yield url


@pytest.fixture()
def env(tmp_path: Path, redis_client, redis_url: str, sandbox, request: pytest.FixtureRequest) -> Iterator[Env]:  # type: ignore[no-untyped-def]
    db = request.getfixturevalue("database_url") if "database_url" in request.fixturenames else f"sqlite:///{tmp_path / 'dispatcher.db'}"
    e = Env(tmp_path, redis_url, db, sandbox.url)
    yield e
    e.stop_all()


def write_campaign(tmp: Path, name: str, contacts: str, *, provider_block: str | None = None, extra: str = "",
                   message: str = "Hi {{ first_name }}, 20% off today. Reply STOP to opt out.",
                   rate_limit: str | None = None) -> Path:
    (tmp / "contacts.csv").write_text(contacts)
    provider_block = provider_block or (
        'provider:\n'
        '  name: dropcowboy\n'
        '  base_url: "${SANDBOX_URL}/v1"\n'
        '  credentials: {team_id: "${DROPCOWBOY_TEAM_ID}", secret: "${DROPCOWBOY_SECRET}"}\n'
        '  options: {pool_id: text, caller_id: "+15557778888"}\n'
        + (f'  rate_limit: "{rate_limit}"\n' if rate_limit else ''))
    path = tmp / "campaign.yaml"
    path.write_text(f"name: {name}\n{provider_block}contacts:\n  path: contacts.csv\n  default_region: US\n"
                    f"message: \"{message}\"\n{extra}")
    return path

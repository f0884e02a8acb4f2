"""`make demo`: Redis (yours or a private one), the sandbox, a worker, the demo campaign, its report.

Everything it starts it stops again; nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / ".run"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def wait_for(check, what: str, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise SystemExit(f"demo: {what} did not come up within {timeout:g} s (logs in {RUN})")


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> int:
    RUN.mkdir(exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    env = dict(os.environ)
    env.setdefault("DROPCOWBOY_TEAM_ID", "demo-team")
    env.setdefault("DROPCOWBOY_SECRET", "demo-secret")
    db = RUN / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    env["DATABASE_URL"] = f"sqlite:///{db}"

    def start(args: list[str], log: str) -> subprocess.Popen[bytes]:
        fh = open(RUN / log, "wb")
        p = subprocess.Popen(args, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(p)
        return p

    try:
        url = env.get("REDIS_URL")
        if url and redis_answers(url):
            print(f"demo: using Redis at REDIS_URL ({url.split('@')[-1]})")
        else:
            server = shutil.which("redis-server")
            if not server:
                print("demo: no Redis answers at REDIS_URL and redis-server is not installed.\n"
                      "      Install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis)\n"
                      "      or set REDIS_URL=redis://host:6379/0, then run `make demo` again.")
                return 1
            port = free_port()
            url = f"redis://127.0.0.1:{port}/0"
            start([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], "redis.log")
            wait_for(lambda: redis_answers(url), "redis-server")
            print(f"demo: started a private redis-server on 127.0.0.1:{port}")
        env["REDIS_URL"] = url
        sb_port = free_port()
        env["SANDBOX_URL"] = f"http://127.0.0.1:{sb_port}"
        start([str(BIN / "dispatcher"), "sandbox", "--port", str(sb_port)], "sandbox.log")
        wait_for(lambda: http_ok(env["SANDBOX_URL"] + "/_sandbox/health"), "the sandbox")
        print(f"demo: sandbox on {env['SANDBOX_URL']}")
        subprocess.run([str(BIN / "dispatcher"), "db", "upgrade"], cwd=ROOT, env=env, check=True)
        import secrets

        hook_port = free_port()
        env["WEBHOOK_TOKEN"] = secrets.token_urlsafe(24)
        env["WEBHOOK_BASE_URL"] = f"http://127.0.0.1:{hook_port}"
        start([str(BIN / "dispatcher"), "webhooks", "--port", str(hook_port)], "webhooks.log")
        wait_for(lambda: http_ok(env["WEBHOOK_BASE_URL"] + "/healthz"), "the webhook receiver")
        print(f"demo: webhook receiver on {env['WEBHOOK_BASE_URL']} (delivery receipts from the sandbox)")
        start([str(BIN / "celery"), "-A", "workers.app", "worker", "-c", "2", "-l", "warning", "-n", "demo@%h"], "worker.log")
        start([str(BIN / "celery"), "-A", "workers.app", "beat", "-l", "warning", "-s", str(RUN / "beat-schedule")], "beat.log")
        print("demo: worker (2 processes) and beat started; running examples/demo/campaign.yaml")
        campaign = "examples/demo/campaign.yaml"
        rc = subprocess.run([str(BIN / "dispatcher"), "run", campaign, "--wait", "--timeout", "120"], cwd=ROOT, env=env).returncode
        if rc != 0:
            return rc
        from sqlalchemy import create_engine, text

        db_engine = create_engine(env["DATABASE_URL"])

        def receipts_in() -> bool:
            with db_engine.connect() as conn:
                return not conn.execute(text("SELECT count(*) FROM message WHERE status = 'sent'")).scalar()
        try:
            wait_for(receipts_in, "delivery receipts", timeout=15)
        except SystemExit:
            print("demo: some delivery receipts have not arrived yet")
        subprocess.run([str(BIN / "dispatcher"), "report", "demo-winter-sale"], cwd=ROOT, env=env, check=True)
        got = httpx.get(env["SANDBOX_URL"] + "/_sandbox/requests", timeout=5).json()["requests"]
        print(f"demo: the sandbox received {len(got)} request(s); per recipient: "
              f"`DATABASE_URL=sqlite:///{db} {BIN / 'dispatcher'} report demo-winter-sale --format csv`")
        return 0
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        print("demo: stopped everything it started")


if __name__ == "__main__":
    sys.exit(main())

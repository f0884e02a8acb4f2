"""End-to-end throughput: bare HTTP vs a naive Celery script vs `dispatcher run`, against the sandbox.

Three figures from one run, at each provider latency given (default 20 ms and 0 ms):
  1. bare:       one process posting N requests with the same HTTP stack (httpx.Client, keep-alive, threads as many
                 as the dispatcher's total in-flight requests), nothing else; then tried 8 s at each of a few
                 narrower widths, and the best of them posting N requests too: the ratio is against bare at its
                 best (one process's GIL favours fewer threads when answers come fast);
  2. naive:      one Celery task per recipient, enqueued one by one, each posting and writing its own outcome row
                 (a threads-pool worker as wide as the dispatcher's in-flight requests);
  3. dispatcher: `dispatcher run` on an N-recipient campaign, rate limit off, one worker node with 2 processes,
                 from the first send to the last outcome recorded.
Everything runs on 127.0.0.1 and stops by itself.

    .venv/bin/python bench/e2e_throughput.py [--recipients 100000] [--bare N] [--naive 10000] [--latency 20 0]
                                             [--concurrency 128] [--bare-probes 8 16 32 64 128]

Bare posts as many requests as the campaign has recipients unless --bare says otherwise, so both figures are
measured over about as long a run (on a shared machine a short run catches a fast or a slow moment).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis
from procfs import machine, machine_times, steal_share, tree_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CREDS = {"DROPCOWBOY_TEAM_ID": "bench-team", "DROPCOWBOY_SECRET": "bench-secret"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


class Stack:
    def __init__(self, tmp: Path, redis_url: str, latency: float, concurrency: int) -> None:
        self.tmp, self.procs = tmp, []
        self.port = free_port()
        self.sandbox = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **CREDS, "REDIS_URL": redis_url, "SANDBOX_URL": self.sandbox,
                    "DATABASE_URL": f"sqlite:///{tmp / 'dispatcher.db'}", "SEND_CONCURRENCY": str(concurrency),
                    "BATCH_SIZE": "500", "NAIVE_DB": str(tmp / "naive.db")}
        self.start([str(BIN / "dispatcher"), "sandbox", "--port", str(self.port), "--latency-ms", str(latency)], "sandbox")
        wait_http(self.sandbox + "/_sandbox/health")
        httpx.post(self.sandbox + "/_sandbox/config", json={"record": False}).raise_for_status()

    def start(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=open(self.tmp / f"{name}.log", "wb"),
                             stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen[bytes]) -> None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        for p in self.procs:
            self.stop(p)


def bare(sandbox: str, n: int, width: int, seconds: float | None = None) -> float:
    """The dispatcher's HTTP stack alone: ``width`` threads, each with its own keep-alive client as the workers
    build it (``runtime.http_client``: httpx.Client over the same transport), posting the same body, until ``n``
    requests are answered (or ``seconds`` have passed). Returns requests per second."""
    import itertools
    import threading

    from dispatcher.runtime import http_client
    from dispatcher.settings import Settings

    settings = Settings(http_timeout=10)
    headers = {"x-team-id": CREDS["DROPCOWBOY_TEAM_ID"], "x-secret": CREDS["DROPCOWBOY_SECRET"]}
    url = sandbox + "/v1/sms"
    numbers = itertools.count()
    deadline = time.perf_counter() + seconds if seconds else float("inf")
    done, failed = [0] * width, [0] * width

    def worker(k: int) -> None:
        http = http_client(settings)
        while time.perf_counter() < deadline:
            i = next(numbers)
            if i >= n:
                break
            try:
                ok = http.post(url, headers=headers, json={
                    "team_id": "bench-team", "secret": "bench-secret", "phone_number": f"+1202{4000000 + i:07d}",
                    "caller_id": "+15557778888", "pool_id": "text", "sms_body": f"Hi {i}, 20% off today",
                    "opt_in": True, "foreign_id": str(i)}).status_code == 200
            except httpx.HTTPError:
                ok = False
            done[k] += 1
            failed[k] += not ok
        http.close()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(width)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    assert not sum(failed), f"bare: {sum(failed)} failures"
    return sum(done) / dt


def bare_best(stack: Stack, n: int, width: int, probes: list[int],
              probe_s: float) -> tuple[dict[int, float], dict[int, float]]:
    """Bare at the dispatcher's width and at the best of a few widths (one process's GIL favours fewer threads
    when answers come fast): each probe width posts for ``probe_s`` seconds, then the best one posts all ``n``.
    Returns (the full runs' rates by width, the probes' rates by width)."""
    at_width = bare(stack.sandbox, n, width)
    probed = {w: bare(stack.sandbox, n, w, probe_s) for w in sorted(set(probes) - {width})}
    full = {width: at_width}
    if probed:
        best = max(probed, key=probed.__getitem__)
        if probed[best] > at_width:
            full[best] = bare(stack.sandbox, n, best)
    return full, probed


def naive(stack: Stack, n: int, width: int) -> float:
    sys.path.insert(0, str(ROOT / "bench"))
    os.environ.update({k: v for k, v in stack.env.items() if k in ("REDIS_URL", "SANDBOX_URL", "NAIVE_DB")})
    import naive_app

    naive_app.DB = stack.env["NAIVE_DB"]          # this latency's own folder
    naive_app.setup(n)
    stack.env["PYTHONPATH"] = str(ROOT / "bench")
    w = stack.start([str(BIN / "celery"), "-A", "naive_app", "worker", "-P", "threads", "-c", str(width), "-l", "warning",
                     "-Q", "naive", "--without-gossip", "--without-mingle"], "naive-worker")
    time.sleep(3)
    for i in range(1, n + 1):          # one by one, as a hand-written script does
        naive_app.send.delay(i)
    db = sqlite3.connect(stack.tmp / "naive.db", timeout=60)
    end = time.monotonic() + 600
    while time.monotonic() < end:
        (done,) = db.execute("SELECT count(*) FROM outcome").fetchone()
        if done >= n:
            break
        time.sleep(0.5)
    first, last = db.execute("SELECT min(at), max(at) FROM outcome").fetchone()
    stack.stop(w)
    stack.env.pop("PYTHONPATH")
    if first is None:
        raise SystemExit(f"naive worker sent nothing (see {stack.tmp}/naive-worker.log)")
    return n / (last - first)


def dispatcher(stack: Stack, n: int) -> tuple[float, dict[str, float]]:
    campaign = stack.tmp / "campaign.yaml"
    with open(stack.tmp / "contacts.csv", "w") as fh:
        fh.write("phone,opt_in,first_name\n")
        for i in range(n):
            fh.write(f"+1202{5000000 + i:07d},yes,P{i}\n")
    campaign.write_text(
        "name: bench\nprovider:\n  name: dropcowboy\n  base_url: \"${SANDBOX_URL}/v1\"\n"
        "  credentials: {team_id: \"${DROPCOWBOY_TEAM_ID}\", secret: \"${DROPCOWBOY_SECRET}\"}\n"
        "  options: {pool_id: text, caller_id: \"+15557778888\"}\n"
        "contacts: {path: contacts.csv, default_region: US}\nmessage: \"Hi {{ first_name }}, 20% off today\"\n")
    subprocess.run([str(BIN / "dispatcher"), "db", "upgrade"], cwd=stack.tmp, env=stack.env, check=True, capture_output=True)
    w = stack.start([str(BIN / "celery"), "-A", "workers.app", "worker", "-c", "2", "-l", "warning",
                     "--without-gossip", "--without-mingle"], "worker")
    time.sleep(3)
    cpu0 = {"workers": tree_cpu_seconds(w.pid), "sandbox": tree_cpu_seconds(stack.procs[0].pid)}
    ticks = machine_times()
    t0 = time.time()
    r = subprocess.run([str(BIN / "dispatcher"), "run", str(campaign), "--wait", "--timeout", "900"], cwd=stack.tmp,
                       env=stack.env, capture_output=True, text=True)
    t_run = time.time() - t0
    stolen = steal_share(ticks, machine_times())
    cpu = {"workers": tree_cpu_seconds(w.pid) - cpu0["workers"], "sandbox": tree_cpu_seconds(stack.procs[0].pid) - cpu0["sandbox"]}
    if r.returncode:
        raise SystemExit(r.stderr)
    db = sqlite3.connect(stack.tmp / "dispatcher.db", timeout=60)
    from datetime import datetime, timezone

    def ts(s: str) -> float:
        return datetime.fromisoformat(s).replace(tzinfo=timezone.utc).timestamp()
    first, = db.execute("SELECT min(started_at) FROM attempt").fetchone()
    last, = db.execute("SELECT max(updated_at) FROM message WHERE status='sent'").fetchone()
    sent, = db.execute("SELECT count(*) FROM message WHERE status='sent'").fetchone()
    stack.stop(w)
    assert sent == n, f"dispatcher sent {sent} of {n}"
    avg_ms, = db.execute("SELECT avg(duration_ms) FROM attempt").fetchone()
    return n / (ts(last) - ts(first)), {"first_send_after_run_s": ts(first) - t0, "run_wall_s": t_run,
                                        "worker_cpu_us": cpu["workers"] / n * 1e6, "sandbox_cpu_us": cpu["sandbox"] / n * 1e6,
                                        "request_ms": avg_ms, "steal": stolen}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipients", type=int, default=100_000)
    ap.add_argument("--bare", type=int, default=None, help="requests for bare (default: --recipients)")
    ap.add_argument("--naive", type=int, default=10_000)
    ap.add_argument("--latency", type=float, nargs="+", default=[20.0, 0.0])
    ap.add_argument("--concurrency", type=int, default=128, help="SEND_CONCURRENCY per worker process")
    ap.add_argument("--bare-probes", type=int, nargs="*", default=[8, 16, 32, 64, 128],
                    help="other widths bare is tried at (8 s each); the best one then posts all its requests")
    ap.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"))
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, databases)")
    a = ap.parse_args()
    a.bare = a.bare or a.recipients
    redis.Redis.from_url(a.redis).flushdb()
    width = 2 * a.concurrency
    print(f"machine: {machine()}")
    print(f"dispatcher: 2 worker processes x SEND_CONCURRENCY={a.concurrency}; bare and naive {width} wide")
    for lat in a.latency:
        tmp = Path(tempfile.mkdtemp(prefix="bench-"))
        stack = Stack(tmp, a.redis, lat, a.concurrency)
        try:
            ticks = machine_times()
            full, probed = bare_best(stack, a.bare, width, a.bare_probes, 8.0)
            bare_steal = steal_share(ticks, machine_times())
            best_w = max(full, key=full.__getitem__)
            b = full[best_w]
            nv = naive(stack, a.naive, width) if a.naive else float("nan")
            d, extra = dispatcher(stack, a.recipients)
        finally:
            stack.close()
            redis.Redis.from_url(a.redis).flushdb()
            if not a.keep:
                shutil.rmtree(tmp, ignore_errors=True)
        tried = ", ".join(f"{w}: {r:,.0f}/s" for w, r in sorted(probed.items()))
        print(f"latency {lat:g} ms: bare {full[width]:,.0f}/s {width} wide, {b:,.0f}/s at its best ({best_w} wide; "
              f"8 s probes {tried}), {a.bare:,} requests | naive {nv:,.0f}/s ({a.naive:,} tasks) | "
              f"dispatcher {d:,.0f}/s ({a.recipients:,} recipients) = {d / b:.2f}x bare at its best ({d / full[width]:.2f}x as wide), {d / nv:.1f}x naive; "
              f"first send {extra['first_send_after_run_s']:.2f} s after `run`, whole run {extra['run_wall_s']:.1f} s; "
              f"CPU per message: workers {extra['worker_cpu_us']:.0f} µs, sandbox {extra['sandbox_cpu_us']:.0f} µs; "
              f"request {extra['request_ms']:.1f} ms on average; steal {bare_steal:.0%} while bare posted, "
              f"{extra['steal']:.0%} while the dispatcher ran (the hypervisor's share of the machine)")


if __name__ == "__main__":
    main()

"""Loading a large contact list: validate, dedupe, store, enqueue. Prints time, rows/s, the loader's peak RSS
and Redis memory for the queued campaign. No worker runs, so nothing is sent.

    .venv/bin/python bench/load_bench.py [--rows 1000000] [--database-url sqlite:///...]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"))
    ap.add_argument("--database-url", default=None)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="loadbench-"))
    csv_path = tmp / "contacts.csv"
    rnd = random.Random(7)
    with open(csv_path, "w") as fh:
        fh.write("phone,opt_in,first_name,opt_in_at\n")
        area = ["202", "212", "305", "415", "512", "617", "702", "808", "907", "646"]
        for i in range(a.rows):
            # mixed spellings, a few duplicates and invalid rows, as real exports have
            n = f"{rnd.choice(area)}555{i % 10000:04d}" if i % 50 else "12345"
            n = f"{rnd.choice(area)}{2000000 + i:07d}" if i % 7 else n
            fh.write(f"+1{n},yes,Name{i},2026-10-01\n" if i % 3 else f"({n[:3]}) {n[3:6]}-{n[6:]},1,Name{i},\n")
    (tmp / "campaign.yaml").write_text(
        "name: loadbench\nprovider:\n  name: dropcowboy\n  base_url: http://127.0.0.1:9/v1\n"
        "  credentials: {team_id: x, secret: y}\n  options: {pool_id: text, caller_id: \"+15557778888\"}\n"
        "contacts: {path: contacts.csv, default_region: US}\nmessage: \"Hi {{ first_name }}, 20% off today\"\n")
    r = redis.Redis.from_url(a.redis)
    r.flushdb()
    before = r.info("memory")["used_memory"]
    env = {**os.environ, "REDIS_URL": a.redis, "DATABASE_URL": a.database_url or f"sqlite:///{tmp / 'd.db'}"}
    subprocess.run([str(BIN / "dispatcher"), "db", "upgrade"], env=env, check=True, capture_output=True)
    t0 = time.perf_counter()
    p = subprocess.run([str(BIN / "dispatcher"), "run", str(tmp / "campaign.yaml")], env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(p.stderr)
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    used = (r.info("memory")["used_memory"] - before) / 1e6
    tasks = r.llen("dispatcher")
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(p.stdout.strip().replace("\n", " "))
    print(f"loaded {a.rows:,} rows in {dt:.1f} s ({a.rows / dt:,.0f} rows/s); loader peak RSS {rss_mb:.0f} MB; "
          f"Redis +{used:.1f} MB for {tasks} queued batch tasks")
    r.flushdb()


if __name__ == "__main__":
    main()

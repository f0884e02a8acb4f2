"""Loading a large contact list: validate, dedupe, store, enqueue. Prints time, rows/s, CPU seconds, the loader's peak
and Redis memory for the queued campaign. No worker runs, so nothing is sent.

The loader's memory is the peak of the PSS summed over its process tree (the loading process and the planning
processes it forks), sampled every 50 ms from /proc/PID/smaps_rollup: pages the processes share are counted once
between them, pages each one has to itself in full. The largest single process's peak RSS is printed beside it.

    .venv/bin/python bench/load_bench.py [--rows 1000000] [--database-url sqlite:///...]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis
from procfs import cpu_seconds, machine, machine_times, steal_share, tree

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeMemory(threading.Thread):
    """Samples the summed PSS of a process tree until the root exits; ``peak_mb`` is the highest sum seen, ``cpu`` the
    CPU seconds each process had used when last seen (within ``interval`` of its end)."""

    def __init__(self, proc: subprocess.Popen[str], interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.proc, self.interval, self.peak_mb, self.peak_processes = proc, interval, 0.0, 0
        self.cpu: dict[int, float] = {}

    def run(self) -> None:
        while self.proc.poll() is None:
            pids = tree(self.proc.pid)
            self.cpu.update((p, cpu_seconds(p)) for p in pids)
            total = sum(_pss_kb(p) for p in pids) / 1024
            if total > self.peak_mb:
                self.peak_mb, self.peak_processes = total, len(pids)
            time.sleep(self.interval)


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
    before_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    ticks = machine_times()
    t0 = time.perf_counter()
    p = subprocess.Popen([str(BIN / "dispatcher"), "run", str(tmp / "campaign.yaml")], env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    memory = TreeMemory(p)
    memory.start()
    stdout, stderr = p.communicate()
    dt = time.perf_counter() - t0
    stolen = steal_share(ticks, machine_times())
    memory.join()
    if p.returncode:
        raise SystemExit(stderr)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    rss_mb = usage.ru_maxrss / 1024
    cpu = usage.ru_utime + usage.ru_stime - before_cpu.ru_utime - before_cpu.ru_stime
    used = (r.info("memory")["used_memory"] - before) / 1e6
    tasks = r.llen("dispatcher")
    print(f"machine: {machine()}")
    print(stdout.strip().replace("\n", " "))
    # CPU seconds of the loader and its planning processes: with the machine shared, the wall time alone says little
    loading = memory.cpu.get(p.pid, 0.0)
    planning = sum(v for pid, v in memory.cpu.items() if pid != p.pid)
    print(f"loaded {a.rows:,} rows in {dt:.1f} s ({a.rows / dt:,.0f} rows/s, {cpu:.1f} CPU s: about {loading:.1f} in "
          f"the loading process, {planning:.1f} in planning processes); "
          f"loader peak PSS {memory.peak_mb:.0f} MB "
          f"summed over {memory.peak_processes} processes (largest process's peak RSS {rss_mb:.0f} MB); "
          f"Redis +{used:.1f} MB for {tasks} queued batch tasks; the hypervisor took {stolen:.0%} of the machine's time "
          "(steal)")
    r.flushdb()
    shutil.rmtree(tmp, ignore_errors=True)   # the database of a million rows takes about 300 MB


if __name__ == "__main__":
    main()

"""What the benchmarks read of their processes and the machine from /proc (Linux): a process tree, CPU time, the
hypervisor's steal, and how fast the machine is running Python right now."""

from __future__ import annotations

import os
import platform
import time


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants, now."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except OSError:   # it has just exited
            continue
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used by process ``pid`` (0.0 once it has gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and all its descendants that are alive now."""
    return sum(cpu_seconds(p) for p in tree(pid))


def machine_times() -> list[int]:
    """The whole machine's CPU time so far, in clock ticks, as /proc/stat's first line gives it (user, nice, system,
    idle, iowait, irq, softirq, steal, ...)."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def steal_share(before: list[int], after: list[int]) -> float:
    """The share of the machine's time between two ``machine_times`` that the hypervisor gave to others (steal):
    on a shared virtual machine, what makes the same run slower on one day than another."""
    d = [b - a for a, b in zip(before, after)]
    return d[7] / sum(d[:8]) if len(d) > 7 and sum(d[:8]) else 0.0


def yardstick_ms() -> float:
    """CPU milliseconds a fixed piece of pure Python takes now (the best of three): the same code measured on two
    days compares only after dividing by this, since this machine's speed moves by two times and more between
    sessions, with or without steal."""
    best = float("inf")
    for _ in range(3):
        t = time.process_time()
        d: dict[str, int] = {}
        for i in range(200_000):
            d[f"+1202{i:07d}"] = len(d) * 2
        sum(v for v in d.values() if v % 3)
        best = min(best, time.process_time() - t)
    return best * 1000


def machine() -> str:
    """The line every benchmark prints about where it ran."""
    return (f"{platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
            f"yardstick {yardstick_ms():.0f} ms of CPU (bench/procfs.py: lower is faster)")

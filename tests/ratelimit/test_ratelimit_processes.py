"""Several real worker processes on one Redis: the limit holds across them, exactly.

Each process (``hammer.py``) works like a worker, sleeping every ``wait``; the slots it was
granted are timed on Redis's clock (see the ``run_processes`` fixture) and counted here.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Callable

import pytest

if TYPE_CHECKING:
    from .conftest import ProcessRun

Run = Callable[..., "ProcessRun"]


def max_in_window(sends: list[float], span: float = 1.0) -> int:
    """Most sends in any closed window of ``span`` seconds."""
    return max(bisect.bisect_right(sends, t + span) - i for i, t in enumerate(sends))


def saturated_rate(run: ProcessRun, key: str) -> float:
    """Slots per second while the key was never idle.

    A slot granted with no wait restarts an idle schedule: a worker process was late to ask
    (a busy machine), not the limiter; the spacing before such a slot is left out.
    """
    slots, idle = run.slots[key], run.idle_starts[key]
    spacings = [b - a for a, b in zip(slots, slots[1:]) if b not in idle]
    return len(spacings) / sum(spacings)


def assert_holds(run: ProcessRun, key: str, limit: float, duration: float) -> None:
    slots = run.slots[key]
    assert len(slots) >= limit * duration * 0.8, f"only {len(slots)} sends: the workers hardly ran"
    assert max_in_window(slots) <= limit * 1.01 + 1
    assert saturated_rate(run, key) == pytest.approx(limit, rel=0.01)


def test_four_processes_hold_fifty_per_second_exactly(run_processes: Run, key: str) -> None:
    job = {"key": key, "rate": "50/s", "max_wait": 0.5}
    run = run_processes([[job]] * 4, duration=3.0)
    assert_holds(run, key, 50, 3.0)
    assert run.commands == run.acquires <= 2 * len(run.slots[key])


def test_two_keys_hammered_at_once_each_get_their_own_rate(run_processes: Run, key: str) -> None:
    fast, slow = f"{key}:fast", f"{key}:slow"
    jobs = [{"key": fast, "rate": "50/s", "max_wait": 0.5}, {"key": slow, "rate": "20/s", "max_wait": 0.5}]
    run = run_processes([jobs] * 4, duration=2.0)
    assert_holds(run, fast, 50, 2.0)
    assert_holds(run, slow, 20, 2.0)


def test_segments_count_across_processes(run_processes: Run, key: str) -> None:
    job = {"key": key, "rate": "60/s", "cost": 3, "max_wait": 0.5}
    run = run_processes([[job]] * 3, duration=2.0)
    assert_holds(run, key, 20, 2.0)  # 60 segments/s in messages of 3


def test_processes_with_wrong_wall_clocks_share_one_schedule(run_processes: Run, key: str) -> None:
    job = {"key": key, "rate": "20/s", "max_wait": 0.5}
    run = run_processes([[job]] * 3, duration=1.5, clock_skews=[-86_400.0, 0.0, 3.15e7])
    assert_holds(run, key, 20, 1.5)

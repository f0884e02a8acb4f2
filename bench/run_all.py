"""`make bench`: every benchmark in turn, each printing its own figures and the machine (see BENCHMARKS.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = [
    ["sandbox_bench.py"],
    ["rate_accuracy.py"],
    ["load_bench.py", "--rows", "1000000"],
    ["e2e_throughput.py", "--recipients", "100000", "--naive", "10000", "--latency", "20", "0"],
    ["bare_shapes.py", "--rounds", "4", "--two", "64", "128"],
]

for args in RUNS:
    print(f"\n$ python bench/{' '.join(args)}", flush=True)
    subprocess.run([sys.executable, str(HERE / args[0]), *args[1:]], check=False)

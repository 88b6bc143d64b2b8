"""Subnormal floats in the torch cells: StepTime's windows with PyTorch's default arithmetic and with subnormals
flushed to zero (what benchmarks/common.py now does, and what XLA does on TensorFlow and JAX), in fresh
processes taken in turns, the windows of each process in order (so a step that slows down within a process
shows as a trend).

    python scripts/subnormals.py --processes 4 --out docs/results/subnormals-DATE.json

Run from a checkout with torch installed; each process is `python -c` importing this checkout's benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import json, os, sys
sys.path.insert(0, {root!r})
os.environ["KERAS_BACKEND"] = "torch"
from benchmarks import common
if not {flush}:
    common.flush_subnormals = lambda: None  # PyTorch's default: subnormals computed at full cost
from benchmarks import bench_fit
out = {{}}
for batch in (32, 256):
    bench = bench_fit.StepTime()
    bench.setup(batch)
    windows = []
    for _ in range({windows}):
        start = common.per_step_clock()
        bench.time_step(batch)
        windows.append(common.per_step_clock() - start)
    out[batch] = windows
print(json.dumps(out))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "FITBENCH_PROFILE": "quick"}
    runs = []
    for number in range(args.processes):
        for flush in ((True, False) if number % 2 == 0 else (False, True)):
            code = CHILD.format(root=str(ROOT), flush=flush, windows=args.windows)
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
            windows = json.loads(proc.stdout.strip().splitlines()[-1])
            runs.append({"flush_subnormals": flush, "windows_s_per_step": windows})
            print(f"process {number + 1}, flush {flush}: " + "; ".join(
                f"batch {b}: " + " ".join(f"{1e3 * w:.1f}" for w in ws) + " ms" for b, ws in windows.items()),
                file=sys.stderr, flush=True)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "cpu": cpu, "runs": runs}, indent=1))
    for flush in (False, True):
        for batch in ("32", "256"):
            medians = [statistics.median(r["windows_s_per_step"][batch]) for r in runs
                       if r["flush_subnormals"] == flush]
            print(f"flush {flush}, batch {batch}: per-process medians "
                  + ", ".join(f"{1e3 * m:.1f}" for m in medians) + " ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

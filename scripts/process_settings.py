"""A benchmark process's settings, one at a time, on and off: StepTime's windows in fresh processes taken in turns
(on, off, off, on, ...), the windows of each process in order (so a step that slows down within a process shows
as a trend). Each process imports this checkout's benchmarks, whose `fix_process` turns every setting on; the
setting measured is turned off in half of them:

- `subnormals`: subnormal floats flushed to zero (what XLA does on TensorFlow and JAX) or PyTorch's default,
  computed at full cost;
- `heap`: glibc keeps freed memory for the next allocation, or its defaults (large blocks mapped afresh and
  handed back to the kernel when freed); on any backend, though the suite keeps it for torch alone.

    python scripts/process_settings.py --setting heap --backend torch --processes 8 --out docs/results/heap-DATE.json

The summary gives, per batch, each side's per-process medians, the spread of one process's windows, and the
ratio off/on of the processes' medians (Hodges-Lehmann, with its 95 % interval: the process is the unit).
Run from a checkout with the backend's framework installed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# benchmarks/common.py's function for each setting, and what turns the setting on in the measured processes: the
# suite's own function (torch alone), or glibc's setting on whatever backend (to see that the others need none)
SETTINGS = {"subnormals": ("flush_subnormals", "original()"),
            "heap": ("keep_freed_memory", "from fitbench.backends.common import keep_freed_heap; keep_freed_heap()")}
CHILD = r"""
import json, os, resource, sys
sys.path.insert(0, {root!r})
os.environ["KERAS_BACKEND"] = {backend!r}
from benchmarks import common
original = getattr(common, {function!r})
setattr(common, {function!r}, lambda: None)  # off: the framework's or the C library's default
if {on}:
    {turn_on}
from benchmarks import bench_fit
out, faults = {{}}, {{}}
for batch in {batches!r}:
    bench = bench_fit.StepTime()
    bench.setup(batch)
    windows = []
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range({windows}):
        start = common.per_step_clock()
        bench.time_step(batch)
        windows.append(common.per_step_clock() - start)
    out[batch] = windows
    faults[batch] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({{"windows": out, "minor_faults": faults}}))
"""


def summary(runs: list[dict], batches: list[int]) -> list[str]:
    sys.path.insert(0, str(ROOT / "src"))
    from fitbench.regress.decide import robust_log_sd
    from fitbench.regress.ranksum import hodges_lehmann_ci

    lines = []
    for batch in map(str, batches):
        medians = {on: [statistics.median(r["windows_s_per_step"][batch]) for r in runs if r["on"] == on]
                   for on in (True, False)}
        faults = {on: statistics.median(r["minor_faults_in_windows"][batch] for r in runs if r["on"] == on)
                  for on in (True, False)}
        within = {on: statistics.median(robust_log_sd(r["windows_s_per_step"][batch]) for r in runs if r["on"] == on)
                  for on in (True, False)}
        ratio, low, high = hodges_lehmann_ci(medians[True], medians[False])
        for on in (True, False):
            lines.append(f"batch {batch}, setting {'on' if on else 'off'}: per-process medians "
                         + ", ".join(f"{1e3 * m:.2f}" for m in medians[on]) + " ms; one process's windows spread "
                         f"{100 * within[on]:.1f} % (median over its processes); {faults[on]:.0f} minor page faults "
                         "in its windows (median)")
        lines.append(f"batch {batch}: off/on {ratio:.3f} [{low:.3f}, {high:.3f}] (95 %, {len(medians[True])} + "
                     f"{len(medians[False])} processes)" + ("" if math.isfinite(high) else ": too few processes"))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), required=True)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--batches", default="32,256")
    parser.add_argument("--processes", type=int, default=4, help="processes per side")
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "FITBENCH_PROFILE": "quick"}
    runs = []
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for number in range(args.processes):
        for on in ((True, False) if number % 2 == 0 else (False, True)):
            code = CHILD.format(root=str(ROOT), backend=args.backend, on=on, function=SETTINGS[args.setting][0],
                                turn_on=SETTINGS[args.setting][1],
                                batches=batches, windows=args.windows)
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            windows = got["windows"]
            runs.append({"on": on, "windows_s_per_step": windows, "minor_faults_in_windows": got["minor_faults"]})
            print(f"process {number + 1}, {args.setting} {'on' if on else 'off'}: " + "; ".join(
                f"batch {b}: " + " ".join(f"{1e3 * w:.1f}" for w in ws) + " ms" for b, ws in windows.items()),
                file=sys.stderr, flush=True)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    lines = summary(runs, batches)
    Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "cpu": cpu, "started": started,
                                          "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                          "setting": args.setting, "backend": args.backend, "runs": runs,
                                          "summary": lines}, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

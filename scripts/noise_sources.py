"""Where the between-process spread of a fit cell comes from: the same cells in many fresh processes under
several thread/affinity settings, interleaved (setting A, B, C, A, B, C, ...), and the coefficient of
variation of the per-process median step time for each backend, batch size and setting.

    python scripts/noise_sources.py --processes 8 --backends tensorflow,jax,torch --out docs/results/noise.json

Each process measures batch 32 and 256 (`fitbench.measure.child.measure_windows`): warm-up, then WINDOWS fit()
calls of `window_steps(batch)` steps, each window's time ÷ steps. The per-process value is the median of
its windows. Settings: `default` (the frameworks' own thread pools), `threads1` (one thread,
fitbench.runtime.thread_env), `threads1-pinned` (one thread, the process pinned to the last CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from fitbench.isolation import child_env, run_isolated
from fitbench.measure.child import measure_windows
from fitbench.regress.decide import between_process_cv
from fitbench.runtime import thread_env

SETTINGS = {
    "default": {"threads": None, "cpus": None},
    "threads1": {"threads": 1, "cpus": None},
    "threads1-pinned": {"threads": 1, "cpus": [os.cpu_count() - 1]},
}
JIT = {"tensorflow": True, "jax": True, "torch": False}  # what Keras' jit_compile="auto" picks on each


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--batch-sizes", default="32,256")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    backends = args.backends.split(",")
    settings = args.settings.split(",")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    runs = []
    started = time.time()
    for round_index in range(args.processes):
        for backend in backends:
            for name in settings:
                s = SETTINGS[name]
                # the thread variables must be in the child's environment before Python starts (OpenMP
                # reads them at library load); measure_windows sets them again and pins the CPUs
                env = child_env(thread_env(backend, s["threads"]) | {"CUDA_VISIBLE_DEVICES": "-1"}, backend)
                result = run_isolated(measure_windows,
                                      {"backend": backend, "api": "functional", "jit": JIT[backend],
                                       "batch_sizes": batch_sizes, "windows": args.windows, **s},
                                      env=env, timeout_s=600)
                runs.append({"round": round_index, "setting": name, **result})
                print(f"[{time.time() - started:6.0f} s] round {round_index} {backend} {name}: " + ", ".join(
                    f"b{c['batch_size']} {1e3 * statistics.median(c['window_step_s']):.2f} ms"
                    for c in result["cells"]), flush=True)
                with open(args.out, "w") as f:
                    json.dump({"runs": runs}, f, indent=1)
    summary = []
    for backend in backends:
        for name in settings:
            for b in batch_sizes:
                medians = [statistics.median(c["window_step_s"]) for r in runs
                           if r["backend"] == backend and r["setting"] == name
                           for c in r["cells"] if c["batch_size"] == b]
                summary.append({"backend": backend, "setting": name, "batch_size": b, "processes": len(medians),
                                "median_step_ms": 1e3 * statistics.median(medians),
                                "between_process_cv": between_process_cv(medians)})
                print(f"{backend:10s} {name:16s} batch {b:4d}: {len(medians)} processes, median "
                      f"{summary[-1]['median_step_ms']:.2f} ms, between-process CV "
                      f"{100 * summary[-1]['between_process_cv']:.1f} %")
    with open(args.out, "w") as f:
        json.dump({"command": " ".join(sys.argv), "machine": os.uname().nodename, "runs": runs,
                   "summary": summary}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

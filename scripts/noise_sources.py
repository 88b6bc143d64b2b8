"""Where the between-process spread of a fit cell comes from: the same cells in many fresh processes under
several thread/affinity settings, interleaved (setting A, B, C, A, B, C, ...), and the coefficient of
variation of the per-process median step time for each backend, batch size and setting.

    python scripts/noise_sources.py --processes 8 --backends tensorflow,jax,torch --out docs/results/noise.json

Each process measures batch 32 and 256 (`fitbench.measure.child.measure_windows`): warm-up, then WINDOWS fit()
calls of `window_steps(batch)` steps, each window's time ÷ steps. The per-process value is the median of
its windows; each window's process CPU time is kept beside its wall time. Settings: `default` (the
frameworks' own thread pools), `threads1` (one thread, fitbench.processes.runtime.thread_env), `threads1-pinned` (one
thread, the process pinned to the last CPU), `threads1-long` (one thread, windows 4x as long with jit).
`python scripts/background_load.py &` beside it measures the same under load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from fitbench.measure.child import measure_windows
from fitbench.measure.harness import window_steps
from fitbench.processes.isolation import child_env, run_isolated
from fitbench.processes.runtime import thread_env
from fitbench.regress.decide import between_process_cv, robust_log_sd

SETTINGS = {
    "default": {"threads": None, "cpus": None},
    "threads1": {"threads": 1, "cpus": None},
    "threads1-pinned": {"threads": 1, "cpus": [os.cpu_count() - 1]},
    # one thread, windows 4x as long with jit (8192 samples, at least 32 steps): fit's per-call set-up a
    # smaller share. Tried on 2026-11-30; it did not lower the between-process spread (docs/noise.md)
    "threads1-long": {"threads": 1, "cpus": None, "long_windows": True},
}


def long_window(batch_size: int, jit: bool) -> int:
    return min(512, max(32, 8192 // batch_size)) if jit else window_steps(batch_size)
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
                s = dict(SETTINGS[name])
                steps = ({str(b): long_window(b, JIT[backend]) for b in batch_sizes}
                         if s.pop("long_windows", False) else None)
                # the thread variables must be in the child's environment before Python starts (OpenMP
                # reads them at library load); measure_windows sets them again and pins the CPUs
                env = child_env(thread_env(backend, s["threads"]) | {"CUDA_VISIBLE_DEVICES": "-1"}, backend)
                result = run_isolated(measure_windows,
                                      {"backend": backend, "api": "functional", "jit": JIT[backend],
                                       "batch_sizes": batch_sizes, "windows": args.windows,
                                       "steps_per_window": steps, **s},
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
                cells = [c for r in runs if r["backend"] == backend and r["setting"] == name
                         for c in r["cells"] if c["batch_size"] == b]
                row = {"backend": backend, "setting": name, "batch_size": b, "processes": len(cells)}
                # wall and process CPU time per step; the per-process value from the first 5 windows (the
                # asv profile's repeat) and from all of them
                for clock, field in (("wall", "window_step_s"), ("cpu", "window_cpu_step_s")):
                    if not all(field in c for c in cells):
                        continue
                    for label, take in (("5", 5), ("all", None)):
                        medians = [statistics.median(c[field][:take]) for c in cells]
                        row[f"{clock}_{label}_median_step_ms"] = 1e3 * statistics.median(medians)
                        row[f"{clock}_{label}_between_process_cv"] = between_process_cv(medians)
                        row[f"{clock}_{label}_robust_cv"] = robust_log_sd(medians)
                summary.append(row)
                print(f"{backend:10s} {name:16s} batch {b:4d}: {len(cells)} processes; " + "; ".join(
                    f"{k[:-len('_between_process_cv')]} CV {100 * v:.1f} % (robust "
                    f"{100 * row[k.replace('between_process_cv', 'robust_cv')]:.1f} %)"
                    for k, v in row.items() if k.endswith("between_process_cv")))
    with open(args.out, "w") as f:
        json.dump({"command": " ".join(sys.argv), "machine": os.uname().nodename, "runs": runs,
                   "summary": summary}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

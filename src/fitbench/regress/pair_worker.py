"""A warm benchmark worker for the paired design (fitbench.regress.pairing): one commit's side of a pair.

Run by path with an asv environment's Python, never imported from the package: the commit under test may be
an old fitbench without this file, so it uses the standard library and asv_runner (which asv installs in
every environment) only. It imports the benchmarks the way asv's own runner does (`get_benchmark_from_name`),
runs their setup once, then waits. Each request runs one timed window (one asv sample, `repeat` 1) of one
benchmark and answers with its sample, so that the parent can alternate the two commits' workers window by
window, or start both at once (duet). One JSON object per line: requests on stdin, answers on the file
descriptor the parent names (the benchmark's own prints go to stderr, never into the answers).

    python pair_worker.py BENCHMARK_DIR ANSWER_FD [CPU,...]   # then {"run": ID} lines; {"stop": true} ends
"""

import os
import sys

# Run by path, this file's folder comes first on sys.path, and its neighbours' names (bisect.py) would shadow
# the standard library's: drop it before anything else is imported.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402


def answer(out, **fields):
    out.write(json.dumps(fields) + "\n")
    out.flush()


def error_line(exc):
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def main(argv):
    benchmark_dir, answer_fd = argv[1], int(argv[2])
    if len(argv) > 3 and argv[3] and hasattr(os, "sched_setaffinity"):  # duet: before any framework starts
        os.sched_setaffinity(0, {int(c) for c in argv[3].split(",")})
    os.set_inheritable(answer_fd, False)  # a process the benchmark starts must not hold the answers open
    out = os.fdopen(answer_fd, "w")
    os.dup2(2, 1)  # whatever the benchmarks print goes to stderr
    from asv_runner.discovery import get_benchmark_from_name

    benchmarks = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("stop"):
            break
        name = request.get("setup") or request.get("run")
        try:
            if "setup" in request:
                started = time.perf_counter()
                benchmark = get_benchmark_from_name(benchmark_dir, name)
                if getattr(benchmark, "setup_cache_key", None) is not None:
                    raise ValueError("a benchmark with setup_cache cannot be paired: measure it with --design unpaired")
                benchmark.set_cache(None)
                skipped = benchmark.do_setup()
                benchmarks[name] = None if skipped else benchmark
                answer(out, ok=True, na=bool(skipped), seconds=time.perf_counter() - started,
                       affinity=sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None)
                continue
            benchmark = benchmarks[name]
            if benchmark is None:
                answer(out, ok=True, na=True)
                continue
            # setup again right before the window: another benchmark of this process may have set shared state
            # (StepTime's window length) since; asv's runner skips the setup before a benchmark's first sample
            if benchmark.do_setup():
                answer(out, ok=True, na=True)
                continue
            # and not once more inside the timing: asv's timer re-runs setup (teardown, setup) before every
            # sample but the first of a run, and this worker's runs are one sample each; a benchmark whose setup
            # builds a fresh model (FirstStep) would build two per window
            if hasattr(benchmark, "_redo_setup_next"):
                benchmark._redo_setup_next = False
            benchmark.repeat = 1  # one sample (one window) per request; do_setup reloads the attribute
            result = benchmark.do_run()
            samples = result["samples"] if isinstance(result, dict) else [result]
            answer(out, ok=True, samples=[s if isinstance(s, (int, float)) and math.isfinite(s) else None
                                          for s in samples])
        except NotImplementedError:  # asv's n/a
            benchmarks[name] = None
            answer(out, ok=True, na=True)
        except Exception as exc:  # the parent records it; the traceback goes to the log
            traceback.print_exc()
            answer(out, ok=False, error=error_line(exc))
    for benchmark in benchmarks.values():
        if benchmark is not None:
            try:
                benchmark.do_teardown()
            except Exception:
                traceback.print_exc()
    return 0


if __name__ == "__main__":
    status = main(sys.argv)
    # Out at once, past the interpreter's finalisation: after the teardowns nothing of the worker's is left to
    # write, and a framework's exit (TensorFlow's, PyTorch's thread pools) took 0.7-1.5 s that every pair waited
    # for before the next could start (docs/alerts.md)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)

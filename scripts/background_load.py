"""A defined "other job on the same machine", so that runs "under load" can be repeated and compared.

    python scripts/background_load.py --seconds 900 &        # beside an alert, a calibration, a noise study

Two worker processes, as a shared CI runner's neighbour looks from inside a 2-core VM:
- `steady`: single-threaded float32 matrix products (512 x 512) without a pause: one core's worth of
  arithmetic and cache traffic for the whole run;
- `bursty`: a pure-Python loop that runs and sleeps in bursts of random length (0.2-3 s each, a fixed
  seed), so the competition for the second core comes and goes within one benchmark process.

It stops after --seconds, on SIGTERM or Ctrl-C, with its workers. Nothing fitbench measures depends on it;
it exists so that docs/alerts.md's "under load" figures have a command.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import sys
import time


def steady(deadline: float) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import numpy as np

    a = np.random.default_rng(0).standard_normal((512, 512), dtype=np.float32)
    while time.time() < deadline:
        a = (a @ a) * np.float32(1e-3) + np.float32(1.0)


def bursty(deadline: float, seed: int) -> None:
    rng = random.Random(seed)
    while time.time() < deadline:
        busy_until = time.time() + rng.uniform(0.2, 3.0)
        x = 0
        while time.time() < busy_until:
            x = (x * 31 + 7) % 1_000_003
        time.sleep(rng.uniform(0.2, 3.0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3600, help="stop after this long (default 3600)")
    parser.add_argument("--workers", default="steady,bursty", help="which workers (default steady,bursty)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    deadline = time.time() + args.seconds
    chosen = [w for w in args.workers.split(",") if w]
    unknown = sorted(set(chosen) - {"steady", "bursty"})
    if unknown:
        sys.stderr.write(f"background_load: unknown worker(s) {', '.join(unknown)} (steady, bursty)\n")
        return 2
    procs = [multiprocessing.Process(target=steady, args=(deadline,)) if w == "steady"
             else multiprocessing.Process(target=bursty, args=(deadline, args.seed)) for w in chosen]
    for p in procs:
        p.daemon = True
        p.start()

    def stop(*_: object) -> None:
        for p in procs:
            p.terminate()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for p in procs:
        p.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())

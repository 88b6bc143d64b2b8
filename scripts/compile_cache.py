"""The first training step with the framework's persistent compilation cache cold and warm, per backend.

    python scripts/compile_cache.py ROUNDS BACKEND[,BACKEND...] OUT_DIR [API] [BATCH]

For each backend (in turn): one process primes a warm cache folder, then ROUNDS rounds of one cold process
(a new, empty folder) and one warm process, in an order drawn per round (fitbench.measure.compile_cache).
Writes OUT_DIR/BACKEND.json (every process's sample, the load average beside it, and the warm/cold ratio with
its exact 95 % interval over the rounds) and prints one summary line per backend. Run it from a frozen copy of
src/ on PYTHONPATH, with nothing else running.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fitbench.measure.compile_cache import compare_cold_warm


def main(argv: list[str]) -> int:
    rounds, names, out = int(argv[0]), argv[1].split(","), Path(argv[2])
    api = argv[3] if len(argv) > 3 else "functional"
    batch = int(argv[4]) if len(argv) > 4 else 32
    out.mkdir(parents=True, exist_ok=True)
    for backend in names:
        c = compare_cold_warm(backend, rounds, api=api, batch_size=batch,
                              progress=lambda line, b=backend: print(f"{b}: {line}", file=sys.stderr, flush=True))
        (out / f"{backend}.json").write_text(json.dumps(c.to_dict(), indent=1) + "\n")
        print(f"{backend}: {c.rounds} rounds, cold median {c.cold_median_s:.3f} s, warm median {c.warm_median_s:.3f} s,"
              f" warm/cold {c.warm_over_cold:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}], p={c.p_value:.4f}, "
              f"load {c.load_1min_range[0]:.2f}-{c.load_1min_range[1]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

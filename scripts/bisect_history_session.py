"""A real `fitbench bisect` and `fitbench history` session on a throw-away repository (docs/alerts.md).

    python scripts/bisect_history_session.py --out docs/results/bisect-history-DATE

The repository holds the tests' toy asv suite (tests/test_alert_stages.py: a 20 ms busy-wait "step", no
framework, a between-process spread drawn per process) and 8 commits: c1 the base, c2..c8 documentation only
except c5, which makes the step 15 % slower. It runs, and keeps the output of:
1. `fitbench bisect c1 c8` (the plant is in the range) and `fitbench bisect c5 c8` (no plant after c5);
2. `asv run --interleave-rounds --record-samples` over c1..c8 (6 processes per commit), then
   `fitbench history --since c1` (one change point expected, at c5) and over a second repository of 8
   documentation-only commits (none expected), and over one with three 4 % steps (drift expected).
Each command's stdout, stderr, exit status and wall time go to session.jsonl; the reports to their folders.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_alert_stages import commit, toy_repo  # noqa: E402  (the toy suite the alert tier uses)

QUIET = r"StepTime.*quiet"


def make_repo(folder: Path, scales: list[float], labels: list[str]) -> list[str]:
    toy_repo(folder)
    hashes = [commit(folder, label, scale=scale) for scale, label in zip(scales, labels)]
    subprocess.run([sys.executable, "-m", "asv", "machine", "--yes"], cwd=folder, check=True, capture_output=True)
    return hashes


def run(cmd: list[str], cwd: Path, log: Path, name: str, env: dict[str, str] | None = None) -> dict:
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    entry = {"name": name, "command": " ".join(cmd[2:] if cmd[:2] == [sys.executable, "-m"] else cmd),
             "exit_status": proc.returncode, "seconds": round(time.monotonic() - started, 1),
             "stdout": proc.stdout, "stderr_tail": proc.stderr[-4000:]}
    with open(log, "a") as f:
        f.write(json.dumps(entry) + "\n")
    print(f"{name}: exit {proc.returncode} in {entry['seconds']} s", flush=True)
    return entry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "session.jsonl"
    work = Path(tempfile.mkdtemp(prefix="bisect-session-"))
    state = work / "state"
    state.mkdir()
    env = {"TOY_STATE": str(state)}

    labels = ["c1 base"] + [f"c{i} documentation only" for i in range(2, 9)]
    labels[4] = "c5 the plant: the step 15 % slower"
    scales = [1.0] * 4 + [1.15] * 4
    planted = work / "planted"
    c = make_repo(planted, scales, labels)
    fitbench = [sys.executable, "-m", "fitbench"]
    run([*fitbench, "bisect", c[0], c[7], "--bench", QUIET, "--out", str(out / "bisect-c1-c8")], planted, log,
        "bisect c1..c8 (plant at c5)", env)
    run([*fitbench, "bisect", c[4], c[7], "--bench", QUIET, "--out", str(out / "bisect-c5-c8")], planted, log,
        "bisect c5..c8 (no plant)", env)

    histories = {"plant at c5": (planted, c)}
    quiet = work / "noop"
    histories["documentation only"] = (quiet, make_repo(quiet, [1.0] * 8, [f"c{i} documentation only"
                                                                           for i in range(1, 9)]))
    steps = work / "steps"
    histories["three 4 % steps"] = (steps, make_repo(steps, [1.0, 1.0, 1.04, 1.04, 1.04**2, 1.04**2, 1.04**3,
                                                             1.04**3], [f"c{i}" for i in range(1, 9)]))
    for label, (repo, hashes) in histories.items():
        (repo / "commits.txt").write_text("\n".join(hashes) + "\n")
        run([sys.executable, "-m", "asv", "run", "--interleave-rounds", "--record-samples", "-b", QUIET,
             f"HASHFILE:{repo / 'commits.txt'}"], repo, log, f"asv run, {label}", {**env, "FITBENCH_PROCESSES": "6"})
        run([*fitbench, "history", "--since", hashes[0], "--until", hashes[-1], "--bench", QUIET,
             "--out", str(out / f"history-{label.replace(' ', '-').replace('%', 'pct')}")], repo, log,
            f"history, {label}", env)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time to the first answer of the default `fitbench run`, for frozen copies of two commits' `src/`.

    python scripts/first_answer.py BEFORE/src AFTER/src ROUNDS > runs.jsonl

Runs `python -m fitbench run` (stderr not a terminal: the CI-log lines) with each copy first on PYTHONPATH,
interleaved A B, B A, ... ROUNDS times, and stops each run once its first cell has started (BEFORE: a
version that prints no answer before its final table) or answered (AFTER). One JSON line per run: seconds
since the command started to the first cell's start and to its answer, and the first lines it read.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

WAIT_S = 240  # a run whose first cell has not answered by then is stopped and counted as such


def one(src: str, label: str) -> dict:
    env = {**os.environ, "PYTHONPATH": src, "TF_CPP_MIN_LOG_LEVEL": "2"}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "fitbench", "run"], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, env=env, start_new_session=True)
    first_start = first_answer = None
    lines: list[str] = []
    for line in proc.stderr:
        now = time.monotonic() - started
        lines.append(f"{now:6.1f} {line.rstrip()}")
        match = re.search(r"\[(\d+)/(\d+)\] (.*)", line)
        if match and "peak probe" not in match.group(3):
            if first_start is None:
                first_start = now
            elif ": " in match.group(3):
                first_answer = now
        # BEFORE is a version without answer lines (2fe7e49 and older): its first cell's start is all it shows
        if first_answer is not None or (label == "before" and first_start is not None) \
                or time.monotonic() - started > WAIT_S:
            break
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait()
    return {"label": label, "first_cell_start_s": first_start, "first_cell_answer_s": first_answer,
            "lines": lines[:8]}


def main() -> None:
    before, after, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for i in range(rounds):
        order = (("before", before), ("after", after)) if i % 2 == 0 else (("after", after), ("before", before))
        for label, src in order:
            print(json.dumps(one(src, label)), flush=True)


if __name__ == "__main__":
    main()

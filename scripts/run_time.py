"""Whole `fitbench run`s timed, two ways interleaved (A B, B A, ...), from frozen copies of `src/`.

    python scripts/run_time.py ROUNDS LABEL=SRC[:FLAG,...] LABEL=SRC[:FLAG,...] [-- RUN OPTIONS] > runs.jsonl

With RUN_TIME_KEEP=DIR set, each run's document is kept there as LABEL-N.json (to compare the cells' numbers).

e.g. `fresh=/tmp/frozen/src:--fresh-processes forked=/tmp/frozen/src -- --api functional`. Each run is
`python -m fitbench run OPTIONS FLAGS --json TMP` with SRC first on PYTHONPATH and stderr not a terminal (the
CI-log lines). One JSON line per run: its label, exit status, wall seconds, seconds to its first cell's
answer, how many cells and probes ended ok, and `cell_processes` from its document.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time


def one(label: str, src: str, flags: list[str], options: list[str], number: int = 0) -> dict:
    env = {**os.environ, "PYTHONPATH": src, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "run.json")
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "fitbench", "run", *options, *flags, "--json", out],
                                stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        first_answer = None
        for line in proc.stderr:
            match = re.search(r"\[(\d+)/(\d+)\] (.*)", line)
            if first_answer is None and match and "peak probe" not in match.group(3) and ": " in match.group(3):
                first_answer = time.monotonic() - started
        status = proc.wait()
        wall = time.monotonic() - started
        doc = json.load(open(out)) if os.path.exists(out) else {}
        if doc and os.environ.get("RUN_TIME_KEEP"):
            with open(os.path.join(os.environ["RUN_TIME_KEEP"], f"{label}-{number}.json"), "w") as f:
                json.dump(doc, f)
    records = doc.get("records", []) + doc.get("peaks", [])
    return {"label": label, "exit_status": status, "wall_s": round(wall, 1),
            "first_cell_answer_s": None if first_answer is None else round(first_answer, 1),
            "ok": sum(r.get("status") == "ok" for r in records), "measured": len(records),
            "cell_processes": doc.get("cell_processes"), "options": options + flags,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def main() -> None:
    argv = sys.argv[1:]
    options = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    rounds, ways = int(argv[0]), []
    for spec in argv[1:3]:
        label, rest = spec.split("=", 1)
        src, _, flags = rest.partition(":")
        ways.append((label, src, [f for f in flags.split(",") if f]))
    for i in range(rounds):
        for label, src, flags in (ways if i % 2 == 0 else ways[::-1]):
            print(json.dumps(one(label, src, flags, options, i + 1)), flush=True)


if __name__ == "__main__":
    main()

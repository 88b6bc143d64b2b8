"""Child-process entry: `python -m fitbench.worker JOB.json` (see fitbench.isolation)."""

from __future__ import annotations

import importlib
import json
import sys
import traceback


def main(job_path: str) -> int:
    with open(job_path) as f:
        job = json.load(f)
    from fitbench.isolation import die_with_parent

    die_with_parent(job.get("parent_pid"))
    module_name, func_name = job["target"].split(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        outcome = {"result": func(**job["kwargs"])}
    except Exception as exc:  # reported to the parent as data: one line, the traceback on stderr
        traceback.print_exc()
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        outcome = {"error": f"{type(exc).__name__}: {first_line}".rstrip(": ")}
    with open(job["result_path"], "w") as f:
        json.dump(outcome, f)
    return 0 if "result" in outcome else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

"""Child-process entry: `python -m fitbench.processes.worker JOB.json` (see fitbench.processes.isolation)."""

from __future__ import annotations

import importlib
import json
import re
import sys
import traceback

_NAMED = re.compile(r"\b([A-Z]\w*(?:Error|Exception|Exit|Interrupt)): (.+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Keras prints the wrapped cause in bold
_NODE = re.compile(r"\{\{function_node [^}]*\}\}")  # TensorFlow's kernel address in front of its message
_KERAS_WRAPPER = re.compile(r"^Exception encountered when calling (\S+?)\.?$")


def error_line(exc: BaseException) -> str:
    """One line that keeps the cause: the exception's type and first line, unless that line is a wrapper's —
    Keras' "Exception encountered when calling X.call()." (the user's own message is the innermost line below
    it, before "Arguments received"), TensorFlow's "Graph execution error:", a message ending in ':' (then the
    innermost named error inside its text); and the root of an explicit `raise ... from` chain when it is
    another error."""
    text = str(exc).strip()
    lines = [_NODE.sub("", _ANSI.sub("", line)).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    wrapper = _KERAS_WRAPPER.match(lines[0]) if lines else None
    if wrapper:
        end = next((i for i, line in enumerate(lines) if line.startswith("Arguments received by")), len(lines))
        if end > 1:
            lines = [f"{lines[end - 1]} (raised in {wrapper.group(1)})"]
    line = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    inner = [m for m in map(_NAMED.search, lines[1:]) if m]
    if lines and (lines[0].endswith(":") or "Graph execution error" in lines[0]) and inner:
        line = f"{type(exc).__name__}: {inner[-1].group(1)}: {inner[-1].group(2)}"
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    if root is not exc:
        root_lines = str(root).strip().splitlines()
        line += f" (caused by {type(root).__name__}: {root_lines[0] if root_lines else ''})".replace(": )", ")")
    return line.rstrip(": ")


def main(job_path: str) -> int:
    with open(job_path) as f:
        job = json.load(f)
    from fitbench.processes.isolation import die_with_parent

    die_with_parent(job.get("parent_pid"))
    module_name, func_name = job["target"].split(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        outcome = {"result": func(**job["kwargs"])}
    except Exception as exc:  # reported to the parent as data: one line, the traceback on stderr
        traceback.print_exc()
        outcome = {"error": error_line(exc)}
    with open(job["result_path"], "w") as f:
        json.dump(outcome, f)
    return 0 if "result" in outcome else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

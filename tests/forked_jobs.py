"""Test-only jobs for tests/test_forked.py, importable by a template and its children through PYTHONPATH."""

import os
import time

IMPORTED_IN = os.getpid()  # the process that imported this module: the template, when it is warm


def whoami(x: int) -> dict:
    return {"pid": os.getpid(), "ppid": os.getppid(), "imported_in": IMPORTED_IN, "x": x}


def fail() -> None:
    raise ValueError("planted failure in the child")


def sleep_for(seconds: float) -> None:
    time.sleep(seconds)


def exit_hard(code: int) -> None:
    print("about to leave without a result", flush=True)
    os._exit(code)


"""Test-only: a second module of jobs (tests/test_forked.py), imported by a child, not by the template."""

import os


def whoami() -> dict:
    return {"pid": os.getpid(), "ppid": os.getppid(), "module": __name__}

"""Parent side: try a user's model in a fresh process before a command spends minutes on it."""

from __future__ import annotations

import sys
from typing import Any

from fitbench.errors import UsageError
from fitbench.models.choice import SEED, ZOO, ModelChoice

CHECK_TIMEOUT_S = 300.0  # building a model and training one step: longer is a hang, not a model


def check_in_child(choice: ModelChoice, backend: str, timeout_s: float | None = None) -> dict[str, Any] | None:
    """For a factory, a file or --data: build the model, feed it one batch and train one step in a fresh
    process (the user's code may import anything), within `timeout_s` (a command's --cell-timeout) and never
    more than CHECK_TIMEOUT_S; a failure is a UsageError line. None for the seed and the zoo, which need no
    asking. `backend` is a stack's name: on tf-keras the factory's `keras` is Keras 2, and a factory that uses
    what Keras 2 lacks is said so here, before any cell runs."""
    if choice.kind in (SEED, ZOO) and choice.data is None:
        return None
    from fitbench.models.workload import describe
    from fitbench.processes.isolation import IsolatedError, heartbeat, process_env, run_isolated
    from fitbench.stacks import parse_stack

    stack = parse_stack(backend)
    limit = min(timeout_s or CHECK_TIMEOUT_S, CHECK_TIMEOUT_S)
    row = f" on the {stack.name} row (Keras 2: its `keras` is tf-keras)" if stack.keras_major == 2 else ""
    def say(line: str) -> None:
        sys.stderr.write(f"fitbench: {line}\n")
        sys.stderr.flush()

    try:
        # a line only when the check is slow (a bad model stays one line): a fresh interpreter imports the
        # framework and trains a step, 5-10 s here, more on a loaded machine
        with heartbeat(say, f"checking --model {choice.source} on {stack.name} in a fresh process", every_s=20):
            return run_isolated(describe, {"choice": choice.to_dict(), "backend": stack.backend,
                                           "keras_major": stack.keras_major},
                                env=process_env(stack, "cpu"), timeout_s=limit)
    except IsolatedError as exc:
        if "did not finish within" in str(exc):
            raise UsageError(f"--model {choice.source}{row}: building it and training one step did not finish within "
                             f"{limit:.0f} s (--cell-timeout, at most {CHECK_TIMEOUT_S:.0f} s for this check)") \
                from None
        message = str(exc)
        message = message.removeprefix("ModelError: ")
        if not message.startswith("--"):
            message = f"--model {choice.source}: {message}"
        if row:
            message = message.replace(f"--model {choice.source}:", f"--model {choice.source}{row}:", 1)
        kept = _keep_child_stderr(exc.stderr)
        if kept:
            message += f" (its traceback: {kept})"
        raise UsageError(message) from None


def _keep_child_stderr(stderr: str) -> str | None:
    """The child's stderr (its traceback) in a file of its own (~/.cache/fitbench/crashes), for the user or a bug
    report; None when it printed nothing or the file cannot be written."""
    if not stderr.strip():
        return None
    import os
    import time

    from fitbench.report.io import cache_dir

    try:
        path = os.path.join(cache_dir("crashes"), time.strftime("child-%Y%m%dT%H%M%S") + f"-{os.getpid()}.log")
        with open(path, "w") as f:
            f.write(stderr)
        return path
    except OSError:
        return None

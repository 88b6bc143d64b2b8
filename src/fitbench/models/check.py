"""Parent side: try a user's model in a fresh process before a command spends minutes on it."""

from __future__ import annotations

from typing import Any

from fitbench.errors import UsageError
from fitbench.models.choice import SEED, ZOO, ModelChoice


def check_in_child(choice: ModelChoice, backend: str, timeout_s: float = 600) -> dict[str, Any] | None:
    """For a factory, a file or --data: build the model, feed it one batch and train one step in a fresh
    process (the user's code may import anything); a failure is a UsageError line. None for the seed and the
    zoo, which need no asking."""
    if choice.kind in (SEED, ZOO) and choice.data is None:
        return None
    from fitbench.isolation import IsolatedError, process_env, run_isolated
    from fitbench.models.workload import describe
    from fitbench.stacks import Stack

    try:
        return run_isolated(describe, {"choice": choice.to_dict(), "backend": backend},
                            env=process_env(Stack(backend), "cpu"), timeout_s=timeout_s)
    except IsolatedError as exc:
        message = str(exc)
        message = message.removeprefix("ModelError: ")
        if not message.startswith("--"):
            message = f"--model {choice.source}: {message}"
        raise UsageError(message) from None

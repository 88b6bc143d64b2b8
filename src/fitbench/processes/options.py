"""User-facing option values, checked in the parent before anything starts: bad input is one UsageError line.

Shared by the commands (and usable from Python): apis, backends, batch sizes, thread and CPU settings.
"""

from __future__ import annotations

import os

from fitbench import APIS
from fitbench.errors import UsageError
from fitbench.models.seed import check_api


def apis(text: str | None, offered: tuple[str, ...] = APIS) -> list[str]:
    """'sequential,functional' -> the apis, in order, once each; None or '' -> every form the model is offered
    in (`offered`: the three APIs for the seed network; a factory's or a file's own form)."""
    if text is None:
        return list(offered)
    chosen = [a.strip() for a in text.split(",")]
    if not all(chosen):  # '' or 'a,,b': an empty name is a slip, never "every api"
        raise UsageError(f"--api must name apis separated by commas, got {text!r}")
    if set(offered) <= set(APIS):
        chosen = [check_api(a) for a in chosen]
    return list(dict.fromkeys(chosen))


def batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(p) for p in text.split(",")]
    except ValueError:
        raise UsageError(f"--batch-sizes must be comma-separated positive integers, got {text!r}") from None
    if any(b <= 0 for b in sizes):
        raise UsageError(f"--batch-sizes: each batch size must be a positive integer, got {min(sizes)}")
    return sizes


def backends(text: str | None) -> tuple[list[str], dict[str, str]]:
    """The backends asked for (default tensorflow) as stack names (fitbench.stacks: tensorflow, jax, torch,
    tf-keras = Keras 2 on TensorFlow), and why each one that is not installed cannot run (name -> reason).
    Nothing to run at all (every backend asked for is missing) is bad input."""
    from fitbench.stacks import parse_stack, stack_missing

    names = [b.strip() for b in ("tensorflow" if text is None else text).split(",")]
    if not all(names):  # '' or 'jax,,torch': never "the default"
        raise UsageError(f"--backend must name backends separated by commas, got {text!r}")
    stacks = list(dict.fromkeys(parse_stack(b) for b in names))
    chosen = [s.name for s in stacks]
    missing = {s.name: why for s in stacks if (why := stack_missing(s))}
    if len(missing) == len(chosen):
        raise UsageError("; ".join(missing.values()))
    return chosen, missing


def backend_names(text: str | None) -> list[str] | None:
    """asv matrix values (KERAS_BACKEND), not checked against what is installed here: asv builds its own."""
    names = [b.strip() for b in text.split(",") if b.strip()] if text else None
    if text is not None and not names:
        raise UsageError("--backend needs at least one backend")
    return names


def threads(text: str) -> int | None:
    """'default' -> None (the frameworks' own pools); else a positive integer."""
    if text == "default":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise UsageError(f"--threads must be a positive integer or 'default', got {text!r}")
    return value


def cpus(text: str | None) -> list[int] | None:
    """'1', '0,1' or '0-1' -> CPUs this process may use; None -> no pinning."""
    from fitbench.processes.runtime import parse_cpus

    try:
        chosen = parse_cpus(text)
    except ValueError as exc:
        raise UsageError(f"--cpus: {exc}") from None
    if chosen is None:
        return None
    available = (sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else list(range(os.cpu_count() or 1)))
    if not chosen <= set(available):
        raise UsageError(f"--cpus {text}: this machine has CPUs {','.join(map(str, available))}")
    return sorted(chosen)

"""Each backend's determinism switches: what is set before the framework starts, what is called in the process,
and how to read back that it took.

Parent side (`switch_env`, `parse_switches`) imports no framework; `turn_on` and `in_force` run in the child of
a cell, the first before its model is built. What each switch is and does lives with its backend
(fitbench.backends); this module resolves a user's choice of switch once, for every command. A switch is
process-wide and, on TensorFlow, cannot be turned off again: a cell with a switch on is a process of its own,
like every cell.
"""

from __future__ import annotations

from typing import Any

from fitbench import backends
from fitbench.backends import Switch
from fitbench.errors import UsageError
from fitbench.stacks import STACK_NAMES, parse_stack

SWITCHES: dict[str, tuple[Switch, ...]] = backends.switches()  # each Keras 3 backend's, its default first


def switches_of(stack: str) -> tuple[Switch, ...]:
    """The switches of a stack (tf-keras has TensorFlow's)."""
    return backends.get(parse_stack(stack).name).SWITCHES


def default_switch(stack: str) -> str:
    return switches_of(stack)[0].name


def get_switch(stack: str, name: str) -> Switch:
    for switch in switches_of(stack):
        if switch.name == name:
            return switch
    have = ", ".join(s.name for s in switches_of(stack))
    raise UsageError(f"{stack} has no determinism switch {name!r}; its switches: {have}")


def parse_switches(text: str | None) -> dict[str, str]:
    """--switch 'torch=warn-only,jax=exclude-nondeterministic-ops' -> {stack: name}; every other stack keeps its
    default. UsageError for an unknown stack or a name its backend does not have."""
    chosen: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        stack, sep, name = part.strip().partition("=")
        stack, name = stack.strip(), name.strip()
        if not sep or not stack or not name:
            raise UsageError(f"--switch takes BACKEND=NAME pairs, e.g. torch=warn-only; got {part.strip()!r}")
        if stack not in STACK_NAMES:
            raise UsageError(f"--switch: unknown backend {stack!r}; choose from {', '.join(STACK_NAMES)}")
        get_switch(stack, name)
        chosen[stack] = name
    return chosen


def resolve_switches(text: str | None, stacks: list[str]) -> dict[str, str]:
    """--switch for the stacks a command runs, the same on every command (run, cost, coverage): parsed, and a
    switch named for a stack the command does not run refused (UsageError), never ignored."""
    chosen = parse_switches(text)
    extra = sorted(set(chosen) - set(stacks))
    if extra:
        raise UsageError(f"--switch names {', '.join(extra)}, which --backend does not run "
                         f"(--backend {','.join(stacks)})")
    return chosen


def switch_env(stack: str, name: str | None) -> dict[str, str]:
    """What a child with this switch on needs in its environment before its framework is imported."""
    return dict(get_switch(stack, name).env) if name else {}


def turn_on(stack: str, name: str) -> dict[str, Any]:
    """In a child, before the model is built: turn the switch on (its environment is already in place);
    returns {"determinism": name, "determinism_in_force": bool} as read back from the framework. The one way
    every command turns a switch on."""
    switch = get_switch(stack, name)
    backends.get(parse_stack(stack).name).turn_on(switch.name)
    return {"determinism": switch.name, "determinism_in_force": in_force(stack, name)}


def in_force(stack: str, name: str | None) -> bool:
    """Whether the framework says the switch is on in this process (no name: whether any switch is)."""
    return backends.get(parse_stack(stack).name).in_force(name)

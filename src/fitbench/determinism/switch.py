"""Each backend's determinism switches: what is set before the framework starts, what is called in the process,
and how to read back that it took.

Parent side (`switch_env`, `parse_switches`) imports no framework; `turn_on` and `in_force` run in the child of
a cell, the first before its model is built. A switch is process-wide and, on TensorFlow, cannot be turned off
again: a cell with a switch on is a process of its own, like every cell.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from fitbench.errors import UsageError
from fitbench.stacks import STACK_NAMES, parse_stack

# XLA's flags (JAX reads XLA_FLAGS once, when it starts): deterministic GPU reductions and scatters; or none of
# the nondeterministic GPU ops at all
JAX_DETERMINISTIC_OPS = "--xla_gpu_deterministic_ops=true"
JAX_EXCLUDE_NONDETERMINISTIC = "--xla_gpu_exclude_nondeterministic_ops=true"


@dataclass(frozen=True)
class Switch:
    name: str
    backend: str
    what: str  # as a user would write it
    env: dict[str, str] = field(default_factory=dict)  # before the framework is imported
    cpu_note: str | None = None  # what it does on a CPU, where that is nothing or little


SWITCHES: dict[str, tuple[Switch, ...]] = {
    "tensorflow": (
        Switch("op-determinism", "tensorflow", "tf.config.experimental.enable_op_determinism()",
               cpu_note="Keras 3 turns jit_compile off under it (keras-team/keras#20315)"),),
    "jax": (
        Switch("deterministic-ops", "jax", f"XLA_FLAGS={JAX_DETERMINISTIC_OPS}", {"XLA_FLAGS": JAX_DETERMINISTIC_OPS},
               cpu_note="a GPU flag of XLA: on a CPU it changes nothing"),
        Switch("exclude-nondeterministic-ops", "jax", f"XLA_FLAGS={JAX_EXCLUDE_NONDETERMINISTIC}",
               {"XLA_FLAGS": JAX_EXCLUDE_NONDETERMINISTIC}, cpu_note="a GPU flag of XLA: on a CPU it changes nothing"),
    ),
    "torch": (
        # cuBLAS needs a fixed workspace to be deterministic; torch raises without it on a GPU
        Switch("deterministic-algorithms", "torch",
               "torch.use_deterministic_algorithms(True), CUBLAS_WORKSPACE_CONFIG=:4096:8",
               {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}),
        Switch("warn-only", "torch",
               "torch.use_deterministic_algorithms(True, warn_only=True), CUBLAS_WORKSPACE_CONFIG=:4096:8",
               {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}),
    ),
}


def switches_of(stack: str) -> tuple[Switch, ...]:
    """The switches of a stack (tf-keras is TensorFlow's)."""
    return SWITCHES[parse_stack(stack).backend]


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


def switch_env(stack: str, name: str | None) -> dict[str, str]:
    """What a child with this switch on needs in its environment before its framework is imported."""
    return dict(get_switch(stack, name).env) if name else {}


def turn_on(stack: str, name: str) -> dict[str, Any]:
    """In a child, before the model is built: turn the switch on (its environment is already in place);
    returns {"determinism": name, "determinism_in_force": bool} as read back from the framework."""
    backend = parse_stack(stack).backend
    switch = get_switch(stack, name)
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True, warn_only=name == "warn-only")
    elif backend == "jax":
        # set by the parent before jax started; XLA reads it once, so setting it now would be a lie
        pass
    return {"determinism": switch.name, "determinism_in_force": in_force(stack, name)}


def in_force(stack: str, name: str | None) -> bool:
    """Whether the framework says the switch is on in this process (no name: whether any switch is)."""
    backend = parse_stack(stack).backend
    if backend == "tensorflow":
        from fitbench.adapters.tf_private import op_determinism_enabled

        return op_determinism_enabled()
    if backend == "torch":
        import torch

        return bool(torch.are_deterministic_algorithms_enabled())
    flags = os.environ.get("XLA_FLAGS", "")
    names = [name] if name else [s.name for s in SWITCHES["jax"]]
    return any(get_switch("jax", n).env["XLA_FLAGS"] in flags for n in names)

"""One home per framework, chosen once: `get(name)` turns a stack's name (tensorflow, jax, torch, or tf-keras
for Keras 2 on TensorFlow) into its backend, as Keras 3 keeps `keras/src/backend/<name>/`.

Each backend module declares what it can do as data (its determinism switches, whether the switch turns XLA
off, whether `keras.distribution` runs on it, how its simulated devices are asked for, Keras' default jit on a
CPU, its feed) — importing it imports no framework, so the parent can read them — and owns the code that is
the framework's: a child's thread pools, turning a determinism switch on and reading it back, the raw step,
the custom training loop around a Keras model, the matmul probe, a layer's training step alone, GPU names.
Those functions import their framework when called, in the child.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Protocol

NAMES = ("tensorflow", "jax", "torch", "tf-keras")
KERAS3 = NAMES[:3]  # the Keras 3 backends (fitbench.BACKENDS)
_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "tf-keras": "tf_keras"}


@dataclass(frozen=True)
class Switch:
    """One of a backend's determinism switches."""

    name: str
    backend: str
    what: str  # as a user would write it
    env: dict[str, str] = field(default_factory=dict)  # before the framework is imported
    cpu_note: str | None = None  # what it does on a CPU, where that is nothing or little


class Backend(Protocol):
    """What every module of this package provides (data first, then the framework's code)."""

    NAME: str  # as --backend spells it
    FRAMEWORK: str  # the package that executes the step
    KERAS_MAJOR: int
    SWITCHES: tuple[Switch, ...]  # the first is the default
    SWITCH_TURNS_OFF_XLA: bool  # Keras runs the step uncompiled under the switch
    SUPPORTS_DISTRIBUTION: bool  # keras.distribution (DataParallel) runs here
    MODEL_KINDS: tuple[str, ...]  # which kinds of --model run on this row (seed, zoo, factory, file)
    SUPPORTS_STEPS_PER_EXECUTION: bool
    SUPPORTS_LAYER_JIT: bool  # a layer's training step can be compiled alone (coverage)
    DEFAULT_JIT: bool  # what jit_compile="auto" picks on a CPU
    FEED: str  # what fit is fed: "tf.data" or "python generator"
    RAW_IDIOM: str  # the raw step, in words
    WARM_IMPORTS: tuple[str, ...]  # imported once by a warm template, before its children fork
    STEP_TRACES: str  # what step_trace_counter counts, in words
    PERSISTENT_CACHE: str  # the framework's on-disk compilation cache, in words (persistent_cache_env)

    def child_env(self) -> dict[str, str]: ...
    def thread_env(self, threads: int | None) -> dict[str, str]: ...
    def apply_threads(self, threads: int | None) -> None: ...
    def thread_settings(self) -> dict[str, int]: ...
    def simulated_devices_env(self, device: str, count: int) -> dict[str, str]: ...
    def turn_on(self, switch: str) -> None: ...
    def in_force(self, switch: str | None) -> bool: ...
    def prepare_training(self, seed: int, intra_op: int, inter_op: int, switch: str | None) -> dict[str, Any]: ...
    def gpu_names(self) -> list[str]: ...
    def flush_subnormals(self) -> None: ...
    def keep_freed_memory(self) -> bool: ...
    def raw_step(self, weights: list[Any], x: Any, y: Any, spec: Any, jit: bool, device: str) -> Any: ...
    def ctl_step(self, model: Any, loss_fn: Any, optimizer: Any, x: Any, y: Any, jit: bool) -> Any: ...
    def matmul(self, a: Any, b: Any, device: str) -> Any: ...
    def layer_step(self, layer: Any, args: tuple[Any, ...], kwargs: dict[str, Any], seed: int,
                   jit: bool) -> tuple[list[Any], list[Any]]: ...
    def apply_gradients(self, model: Any, optimizer: Any, grads: list[Any]) -> None: ...
    def step_trace_counter(self, model: Any) -> Any: ...
    def persistent_cache_env(self, directory: str) -> dict[str, str]: ...
    def step_prefixes(self, model: Any, loss_fn: Any, x: Any, y: Any, jit: bool) -> dict[str, Any]: ...


def get(name: str) -> Backend:
    """The backend of a stack's name (tensorflow, jax, torch, tf-keras); ValueError for another name. Imports
    no framework."""
    if name not in _MODULES:
        raise ValueError(f"no backend {name!r}; fitbench has {', '.join(NAMES)}")
    return importlib.import_module(f"fitbench.backends.{_MODULES[name]}")  # type: ignore[return-value]


def switches() -> dict[str, tuple[Switch, ...]]:
    """Every Keras 3 backend's switches (tf-keras has TensorFlow's)."""
    return {name: get(name).SWITCHES for name in KERAS3}

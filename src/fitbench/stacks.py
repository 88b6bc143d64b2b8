"""Which Keras runs a cell: Keras 3 on its three backends, or Keras 2 (tf-keras) on TensorFlow.

A record names its stack with two fields: `backend` (the framework that executes the step: tensorflow, jax
or torch, as before) and `keras_major` (3, or 2 for tf-keras). Records written before Keras 2 was a row
have no `keras_major`: they are Keras 3 (`keras_major_of`). On the command line the Keras 2 row is one
more `--backend` value, `tf-keras`, because that is how users name it (`pip install tf-keras`,
`TF_USE_LEGACY_KERAS=1`).

Parent side: nothing here imports a framework, except `keras_module`, which a child calls.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from fitbench import BACKENDS
from fitbench.errors import UsageError

TF_KERAS = "tf-keras"  # the --backend name of Keras 2 on TensorFlow
KERAS_2_BACKEND = "tensorflow"  # the one framework tf-keras runs on: its Keras 3 twin is that backend's row
STACK_NAMES = (*BACKENDS, TF_KERAS)
LEGACY_ENV = "TF_USE_LEGACY_KERAS"  # TensorFlow's own switch: tf.keras is tf-keras when it is "1"


@dataclass(frozen=True)
class Stack:
    backend: str = "tensorflow"  # the framework that executes the step
    keras_major: int = 3

    @property
    def name(self) -> str:
        return TF_KERAS if self.keras_major == 2 else self.backend

    def env(self) -> dict[str, str]:
        """What a child process of this stack needs before TensorFlow is imported."""
        return {LEGACY_ENV: "1"} if self.keras_major == 2 else {}


def parse_stack(name: str) -> Stack:
    name = name.strip()
    if name in ("tf_keras", "keras2"):  # the package's import name and the obvious alias
        name = TF_KERAS
    if name == TF_KERAS:
        return Stack(KERAS_2_BACKEND, 2)
    if name in BACKENDS:
        return Stack(name, 3)
    raise UsageError(f"unknown backend {name!r}; choose from {', '.join(STACK_NAMES)}")


def require_model_kind(stacks: list[Stack], model: str) -> None:
    """Each row runs the kinds of model its backend declares (the Keras 2 row: the seed, a factory, a file)."""
    from fitbench import backends
    from fitbench.models.choice import ModelChoice

    kind = ModelChoice(source=model).kind
    for stack in stacks:
        if kind not in backends.get(stack.name).MODEL_KINDS:
            raise UsageError(f"the {stack.name} row runs {', '.join(backends.get(stack.name).MODEL_KINDS)} models, "
                             f"not the zoo's {model} (Keras 3 code)" if kind == "zoo" else
                             f"the {stack.name} row does not run {kind} models (--model {model})")


def keras_2_beside_3(stacks: list[Stack]) -> bool:
    """Both Keras majors on TensorFlow (the one framework Keras 2 runs on): the runs pair them cell by cell."""
    return any(s.keras_major == 2 for s in stacks) and any(s.keras_major == 3 and s.backend == KERAS_2_BACKEND
                                                           for s in stacks)


def one_per_keras(stacks: list[Stack]) -> list[Stack]:
    """The first stack of each Keras major, in order: where a user's model is tried once per Keras."""
    firsts: dict[int, Stack] = {}
    for stack in stacks:
        firsts.setdefault(stack.keras_major, stack)
    return list(firsts.values())


def require_seed_model(stacks: list[Stack], model: str) -> None:
    """For the commands whose Keras 2 row builds the seed network only (determinism, versions, bisect)."""
    if model != "seed" and any(s.keras_major == 2 for s in stacks):
        raise UsageError(f"the {TF_KERAS} row (Keras 2) of this command runs the seed network only, "
                         f"not --model {model} (fitbench run takes it there)")


def keras_major_of(record: dict[str, Any]) -> int:
    """A record's Keras major version; records from before the Keras 2 row are Keras 3."""
    return int(record.get("keras_major") or 3)


def stack_name(record: dict[str, Any]) -> str:
    """What tables print in the backend column: `tf-keras` for Keras 2, else the backend."""
    return Stack(record.get("backend") or "tensorflow", keras_major_of(record)).name


def framework_module(backend: str) -> str:
    """The import name of the framework behind a Keras backend."""
    from fitbench import backends

    return backends.get(backend).FRAMEWORK


def backend_missing(backend: str) -> str | None:
    """Why `backend` cannot run in this environment (its framework is not installed), or None."""
    import importlib.util

    name = framework_module(backend)
    if importlib.util.find_spec(name) is None:
        extra = "" if backend == "tensorflow" else f' (pip install -e ".[{backend}]")'  # tensorflow: the base install
        return f"the {backend} backend needs the {name} package, which is not installed{extra}"
    return None


def stack_missing(stack: Stack) -> str | None:
    """Why `stack` cannot run here (a package is not installed), or None. Parent side: no import."""
    import importlib.util

    why = backend_missing(stack.backend)
    if why or stack.keras_major == 3:
        return why
    if importlib.util.find_spec("tf_keras") is None:
        return 'the tf-keras row needs the tf-keras package, which is not installed (pip install -e ".[legacy]")'
    return None


def keras_module(keras_major: int = 3) -> Any:
    """The Keras of this (child) process: `keras` (3), or `tf_keras` (2), which needs TF_USE_LEGACY_KERAS=1
    before TensorFlow is imported (the parent puts it in the child's environment: `Stack.env`)."""
    if keras_major == 2:
        if os.environ.get(LEGACY_ENV) != "1":
            raise RuntimeError(f"tf-keras needs {LEGACY_ENV}=1 in the environment before TensorFlow is imported")
        from fitbench.adapters.tf_keras import keras2

        return keras2()
    import keras

    return keras

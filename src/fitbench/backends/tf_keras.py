"""Keras 2 (tf-keras) on TensorFlow: TensorFlow's code, with the Keras 2 rules where they differ.

A child of this stack needs TF_USE_LEGACY_KERAS=1 before TensorFlow is imported (then `tf.keras` is
tf-keras); it builds the seed network, or a user's factory or .keras file with `import keras` resolving to
tf-keras (fitbench.adapters.tf_keras.as_keras), not the zoo (Keras 3 code); tf-keras keeps
XLA under op determinism, where Keras 3 turns it off; and it has no `keras.distribution`.
"""

from __future__ import annotations

from typing import Any

from fitbench.backends import tensorflow
from fitbench.backends.tensorflow import (  # noqa: F401 - the framework's code is TensorFlow's
    DEFAULT_JIT,
    FEED,
    FRAMEWORK,
    PERSISTENT_CACHE,
    RAW_IDIOM,
    STEP_TRACES,
    SUPPORTS_LAYER_JIT,
    SUPPORTS_STEPS_PER_EXECUTION,
    SWITCHES,
    apply_gradients,
    apply_threads,
    ctl_step,
    flush_subnormals,
    gpu_names,
    in_force,
    keep_freed_memory,
    layer_step,
    matmul,
    persistent_cache_env,
    raw_step,
    set_threads,
    simulated_devices_env,
    step_prefixes,
    step_trace_counter,
    thread_env,
    thread_settings,
    turn_on,
)

NAME = "tf-keras"
KERAS_MAJOR = 2
LEGACY_ENV = "TF_USE_LEGACY_KERAS"  # TensorFlow's own switch: tf.keras is tf-keras when it is "1"
WARM_IMPORTS = ("tensorflow", "tf_keras")  # what a template imports once (Keras 3's `keras` is not this row's)
SWITCH_TURNS_OFF_XLA = False  # tf-keras keeps jit_compile under op determinism (docs/results.md)
SUPPORTS_DISTRIBUTION = False
MODEL_KINDS = ("seed", "factory", "file")  # the zoo is Keras 3 code; a factory's `keras` is tf-keras here


def child_env() -> dict[str, str]:
    return {"KERAS_BACKEND": "tensorflow", LEGACY_ENV: "1"}


def seed(value: int) -> None:
    from fitbench.adapters.tf_keras import keras2

    keras2().utils.set_random_seed(value)


def prepare_training(seed_value: int, intra_op: int, inter_op: int, switch: str | None) -> dict[str, Any]:
    return tensorflow.prepare_training(seed_value, intra_op, inter_op, switch, seed_with=seed)

"""tf-keras (Keras 2): the legacy optimizer that lets two models share one optimizer silently.

Why: the seed question's divergence needs Keras 2's `optimizers.legacy.Adam`, which accepts a second
model's variables and so shares its step counter and moment slots; Keras 3 refuses (`Unknown variable`).
tf-keras must be imported with TF_USE_LEGACY_KERAS=1 in the environment of a fresh process. Checked with
tf-keras 2.21.0 (its version follows TensorFlow's).
"""

from __future__ import annotations

import importlib.util
from typing import Any

CHECKED_TF_KERAS = "2.21.0"
OPTIMIZER_NAME = "tf_keras.optimizers.legacy.Adam"


def available() -> bool:
    return importlib.util.find_spec("tf_keras") is not None


def keras2() -> Any:
    import tf_keras

    return tf_keras


def legacy_adam(keras2_module: Any, learning_rate: float) -> Any:
    return keras2_module.optimizers.legacy.Adam(learning_rate=learning_rate)


def as_keras() -> Any:
    """Make `import keras` (and `from keras.layers import ...`) give tf-keras in this process, as it did when
    Keras 2 was the `keras` package: a user's factory written against the public `keras` API then runs
    unchanged on the Keras 2 row. Only in a Keras 2 child, before the user's module is imported; fitbench's
    own Keras 2 code names `tf_keras` and does not depend on it."""
    import sys

    module = keras2()
    for name in [n for n in sys.modules if n == "keras" or n.startswith("keras.")]:
        del sys.modules[name]  # a Keras 3 imported earlier must not answer `keras.layers` and the like
    for name, sub in list(sys.modules.items()):
        if name == "tf_keras" or (name.startswith("tf_keras.") and not name.startswith("tf_keras.src")):
            sys.modules["keras" + name[len("tf_keras"):]] = sub
    return module

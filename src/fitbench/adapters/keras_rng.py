"""Keras internals: seeding Keras on JAX and PyTorch without importing TensorFlow.

Why private: `keras.utils.set_random_seed` also seeds TensorFlow whenever it is installed (for tf.data),
through a lazy module handle kept in `keras.src.utils.rng_utils.tf`. The JAX and PyTorch cells feed no
tf.data, and that import alone would land in every such process's start-up time and peak memory
(docs/results.md measures it). The
weights are the same either way: Keras' initializers draw from its own seed generator (tests/test_backends.py
checks it). Checked with Keras 3.12.4 and 3.15.1; another layout falls back to Keras' own call (and its import).
"""

from __future__ import annotations

from typing import Any

CHECKED_KERAS = "3.12.4, 3.15.1"


class _NotInstalled:
    available = False


def set_random_seed_without_tensorflow(keras: Any, seed: int) -> bool:
    """`keras.utils.set_random_seed(seed)` with Keras' TensorFlow handle masked as not installed. Returns
    False (having seeded Keras' own way) when this Keras keeps no such handle."""
    try:
        from keras.src.utils import rng_utils
    except ImportError:
        rng_utils = None
    lazy_tf = getattr(rng_utils, "tf", None)
    if lazy_tf is None:
        keras.utils.set_random_seed(seed)
        return False
    rng_utils.tf = _NotInstalled()
    try:
        keras.utils.set_random_seed(seed)
    finally:
        rng_utils.tf = lazy_tf
    return True

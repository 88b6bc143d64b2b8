"""TensorFlow internals: whether op determinism is on.

Why private: `tf.config.experimental.enable_op_determinism()` is public, but asking whether it is on is
not (`tensorflow.python.framework.config.is_op_determinism_enabled`). fitbench records the answer with every
determinism run rather than trusting that the switch took. Checked with TensorFlow 2.21.0.
"""

from __future__ import annotations

CHECKED_TENSORFLOW = "2.21.0"


def op_determinism_enabled() -> bool:
    from tensorflow.python.framework.config import is_op_determinism_enabled

    return bool(is_op_determinism_enabled())

"""Test-only factories for `fitbench explain`: a source of nondeterminism planted inside one layer.

Importable by the CLI's children through PYTHONPATH (tests/test_explain.py sets it). The noise is unseeded
(NumPy's generator from OS entropy), so two processes part exactly where it starts: at training step
PLANTED_STEP, in the planted layer's forward pass or in the gradient flowing back through it.
"""

import keras
import numpy as np

PLANTED_STEP = 2


class _PlantedLayer(keras.layers.Layer):
    """Identity; counts its training calls, and from the one after PLANTED_STEP on gives unseeded noise."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = 0

    def noise_now(self, x):
        self.calls += 1
        if self.calls <= PLANTED_STEP:
            return None
        return np.random.default_rng().normal(scale=1e-3, size=tuple(x.shape)).astype("float32")


class ForwardNoise(_PlantedLayer):
    """Identity until it has run PLANTED_STEP training steps; then adds a tiny unseeded noise to its output."""

    def call(self, x, training=None):
        noise = self.noise_now(x) if training else None
        return x if noise is None else x + keras.ops.convert_to_tensor(noise)


class GradientNoise(_PlantedLayer):
    """Identity forward; from training step PLANTED_STEP on, adds unseeded noise to the gradient it passes back."""

    def call(self, x, training=None):
        if not training:
            return x
        noise = self.noise_now(x)

        @keras.ops.custom_gradient
        def passthrough(t):
            def grad(*args, upstream=None):
                upstream = args[0] if upstream is None else upstream
                return upstream if noise is None else upstream + keras.ops.convert_to_tensor(noise)
            return t * 1.0, grad

        return passthrough(x)


def _model(planted):
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh"), planted,
                             keras.layers.Dense(4)])


def forward_noise():
    return _model(ForwardNoise(name="forward_noise"))


def gradient_noise():
    return _model(GradientNoise(name="gradient_noise"))


class AlwaysNoise(keras.layers.Layer):
    """Adds a tiny unseeded noise to its output in training: two processes part in its forward pass."""

    def call(self, x, training=None):
        if not training:
            return x
        noise = np.random.default_rng().normal(scale=1e-3, size=tuple(x.shape)).astype("float32")
        return x + keras.ops.convert_to_tensor(noise)


class RaisesUnderSwitch(keras.layers.Layer):
    """Identity, beside an op its framework refuses under the determinism switch on a CPU: PyTorch's `put_`
    (no deterministic implementation), TensorFlow's unseeded RandomUniform. JAX has no such op: identity."""

    def call(self, x):
        backend = keras.backend.backend()
        if backend == "torch":
            import torch

            torch.zeros(2).put_(torch.tensor([0]), torch.tensor([1.0]))
        elif backend == "tensorflow":
            import tensorflow as tf

            tf.raw_ops.RandomUniform(shape=[1], dtype=tf.float32, seed=0, seed2=0)
        return x


def switch_coverage():
    """Dense (covered), a layer the switch cannot make deterministic, Dense, a layer that raises under it."""
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh"), AlwaysNoise(name="noise"),
                             keras.layers.Dense(4), RaisesUnderSwitch(name="refused")])

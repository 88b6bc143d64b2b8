"""Test-only factories for `fitbench explain`: a source of nondeterminism planted inside one layer.

Importable by the CLI's children through PYTHONPATH (tests/test_explain.py sets it). The noise is unseeded
(NumPy's generator from OS entropy), so two processes part exactly where it starts: at training step
PLANTED_STEP, in the planted layer's forward pass or in the gradient flowing back through it.
"""

import keras
import numpy as np

PLANTED_STEP = 2


class ForwardNoise(keras.layers.Layer):
    """Identity until it has run PLANTED_STEP training steps; then adds a tiny unseeded noise to its output."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = 0

    def call(self, x, training=None):
        if not training:
            return x
        self.calls += 1
        if self.calls <= PLANTED_STEP:
            return x
        noise = np.random.default_rng().normal(scale=1e-3, size=tuple(x.shape)).astype("float32")
        return x + keras.ops.convert_to_tensor(noise)


class GradientNoise(keras.layers.Layer):
    """Identity forward; from training step PLANTED_STEP on, adds unseeded noise to the gradient it passes back."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = 0

    def call(self, x, training=None):
        if not training:
            return x
        self.calls += 1
        noise = (np.random.default_rng().normal(scale=1e-3, size=tuple(x.shape)).astype("float32")
                 if self.calls > PLANTED_STEP else None)

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

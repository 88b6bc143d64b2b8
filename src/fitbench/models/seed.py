"""The seed's dense network, built three ways (Sequential, Functional, subclassed).

Keras is imported inside the builders, not at module level: the parent CLI process plans cells and
compares results without ever loading a framework (each framework cell runs in its own process).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from fitbench import APIS
from fitbench.errors import UsageError

SEED_INPUT_DIM = 4096
SEED_WIDTHS = (256, 256, 256)
SEED_OUTPUT_DIM = 200  # length of the seed's target vector y
SEED_LEARNING_RATE = 0.01


@dataclass(frozen=True)
class ModelSpec:
    """Input(input_dim) -> Dense(w, activation) for w in widths -> Dense(output_dim, activation)."""

    input_dim: int = SEED_INPUT_DIM
    widths: tuple[int, ...] = field(default=SEED_WIDTHS)
    output_dim: int = SEED_OUTPUT_DIM
    activation: str = "sigmoid"
    learning_rate: float = SEED_LEARNING_RATE

    def layer_shapes(self) -> list[tuple[int, int]]:
        """(fan_in, fan_out) of every Dense layer, in order."""
        dims = [self.input_dim, *self.widths, self.output_dim]
        return list(zip(dims[:-1], dims[1:]))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelSpec":
        return cls(**{**d, "widths": tuple(d["widths"])})


def parse_widths(text: str) -> tuple[int, ...]:
    """'256,256,256' -> (256, 256, 256); anything else is a UsageError."""
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not p for p in parts):
        raise UsageError(f"--widths must be comma-separated positive integers, got {text!r}")
    try:
        widths = tuple(int(p) for p in parts)
    except ValueError:
        raise UsageError(f"--widths must be comma-separated positive integers, got {text!r}") from None
    if any(w <= 0 for w in widths):
        raise UsageError(f"--widths must be comma-separated positive integers, got {text!r}")
    return widths


def check_api(api: str) -> str:
    if api not in APIS:
        raise UsageError(f"unknown api {api!r}; choose from {', '.join(APIS)}")
    return api


def param_count(spec: ModelSpec) -> int:
    """Trainable parameters, computed from the shapes (kernel + bias of every Dense)."""
    return sum(i * o + o for i, o in spec.layer_shapes())


def train_step_flops(spec: ModelSpec, batch_size: int) -> int:
    """Analytic FLOPs of one training step: the matrix products only.

    Per Dense layer (fan_in I, fan_out O) and batch B: forward 2BIO, weight gradient 2BIO, and input
    gradient 2BIO for every layer but the first (the data needs no gradient). Bias adds, activations,
    the loss and the Adam update are O(B*O + params) and left out: they are <1% at the seed's sizes.
    """
    total = 0
    for index, (i, o) in enumerate(spec.layer_shapes()):
        matmul = 2 * batch_size * i * o
        total += matmul * (2 if index == 0 else 3)
    return total


def _keras(keras_module: Any = None) -> Any:
    """Keras 3 by default; `fitbench replay` passes the legacy `tf_keras` to replay the Keras 2 behaviour."""
    if keras_module is not None:
        return keras_module
    import keras

    return keras


def _dense_layers(spec: ModelSpec, keras_module: Any = None) -> list[Any]:
    # One place creates the layers, in one order, for all three APIs: Keras draws each initializer's
    # seed when the layer is constructed, so the same order after set_random_seed gives the same weights.
    keras = _keras(keras_module)
    layers = [keras.layers.Dense(w, activation=spec.activation) for w in spec.widths]
    layers.append(keras.layers.Dense(spec.output_dim, activation=spec.activation))
    return layers


def _subclassed_class(keras_module: Any = None) -> type:
    keras = _keras(keras_module)

    class DenseStack(keras.Model):
        """The seed network as a keras.Model subclass."""

        def __init__(self, spec: ModelSpec, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.spec = spec
            self.dense_layers = _dense_layers(spec, keras)

        def build(self, input_shape: Any) -> None:
            # Build layer by layer, in order, as Sequential and Functional do.
            shape = tuple(input_shape)
            for layer in self.dense_layers:
                layer.build(shape)
                shape = (*shape[:-1], layer.units)
            super().build(input_shape)

        def call(self, inputs: Any) -> Any:
            x = inputs
            for layer in self.dense_layers:
                x = layer(x)
            return x

    return DenseStack


def seed_keras(seed: int, keras_module: Any = None) -> None:
    """`keras.utils.set_random_seed(seed)`, without importing TensorFlow on the JAX and PyTorch backends
    (fitbench.adapters.keras_rng says why and how)."""
    keras = _keras(keras_module)
    if keras.backend.backend() == "tensorflow" or keras_module is not None:
        keras.utils.set_random_seed(seed)
        return
    from fitbench.adapters.keras_rng import set_random_seed_without_tensorflow

    set_random_seed_without_tensorflow(keras, seed)


def build_model(api: str, spec: ModelSpec = ModelSpec(), seed: int | None = None, keras_module: Any = None) -> Any:
    """Build (not compile) the network with the given API; seed it first when seed is given."""
    keras = _keras(keras_module)
    check_api(api)
    if seed is not None:
        seed_keras(seed, keras_module)
    if api == "sequential":
        model = keras.Sequential([keras.Input(shape=(spec.input_dim,)), *_dense_layers(spec, keras)],
                                 name="sequential")
    elif api == "functional":
        inputs = keras.Input(shape=(spec.input_dim,))
        x = inputs
        for layer in _dense_layers(spec, keras):
            x = layer(x)
        model = keras.Model(inputs=inputs, outputs=x, name="functional")
    else:
        model = _subclassed_class(keras)(spec, name="subclassed")
        model.build((None, spec.input_dim))
    return model


def make_optimizer(spec: ModelSpec = ModelSpec(), keras_module: Any = None, legacy: bool = False) -> Any:
    """A fresh Adam: every model gets its own (sharing one is the seed question's bug).

    legacy=True gives tf_keras' `optimizers.legacy.Adam`, the Keras 2 optimizer that accepts new
    variables silently (and so lets two models share its step counter and slots).
    """
    keras = _keras(keras_module)
    if legacy:
        from fitbench.adapters.tf_keras import legacy_adam

        return legacy_adam(keras, spec.learning_rate)
    return keras.optimizers.Adam(learning_rate=spec.learning_rate)


def compile_model(model: Any, jit: bool, spec: ModelSpec = ModelSpec(), optimizer: Any = None,
                  steps_per_execution: int = 1) -> Any:
    """Compile with MSE, a fresh Adam unless one is given, and jit_compile=jit as requested."""
    model.compile(loss="mse", optimizer=optimizer if optimizer is not None else make_optimizer(spec),
                  jit_compile=bool(jit), steps_per_execution=int(steps_per_execution))
    return model


def jit_effective(model: Any) -> bool:
    """What Keras will really do: it can turn jit_compile=True off (e.g. under TF op determinism)."""
    return bool(model.jit_compile)


def trainable_param_count(model: Any) -> int:
    """Trainable parameters as Keras counts them."""
    import numpy as np

    return int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))

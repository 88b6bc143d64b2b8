"""The zoo: small models that exercise what the seed's dense stack does not, each a miniature of a common
Keras example, each in Sequential, Functional and subclassed form where the API can express it.

- `conv`: Conv2D, BatchNormalization (moving statistics), MaxPooling, Dropout (an RNG), on 28×28×1 images,
  10 classes (the MNIST convnet example, smaller). Sequential, Functional, subclassed.
- `text`: Embedding (a scatter in the gradient) and a GRU over token ids, binary label (the IMDB example,
  smaller). Sequential, Functional, subclassed.
- `attention`: one transformer block, MultiHeadAttention + LayerNormalization + a Dense feed-forward, on a
  sequence of vectors, regression of one vector per sequence. Functional and subclassed (a residual
  connection has no Sequential form).

Each builder makes its layers in one order for every API, so the same seed gives the same initial weights
whatever the API (fitbench determinism checks it). Keras is imported inside the functions (child side).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class ZooModel:
    name: str
    apis: tuple[str, ...]
    loss: str
    build: Callable[[str], Any]  # api -> an uncompiled keras.Model
    make_batch: Callable[[int, int], tuple[Any, Any]]  # (batch_size, seed) -> (x, y)
    summary: str


# ---------- conv ----------

CONV_SHAPE, CONV_CLASSES = (28, 28, 1), 10


def _conv_layers(keras: Any) -> list[Any]:
    return [keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.BatchNormalization(),
            keras.layers.MaxPooling2D(2), keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(2), keras.layers.Flatten(), keras.layers.Dropout(0.25),
            keras.layers.Dense(CONV_CLASSES, activation="softmax")]


def _conv_batch(batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.random((batch_size, *CONV_SHAPE), dtype=np.float32),
            rng.integers(0, CONV_CLASSES, size=(batch_size,)).astype(np.int32))


# ---------- text ----------

TEXT_VOCAB, TEXT_LENGTH = 2000, 40


def _text_layers(keras: Any) -> list[Any]:
    return [keras.layers.Embedding(TEXT_VOCAB, 32), keras.layers.GRU(32), keras.layers.Dropout(0.2),
            keras.layers.Dense(1, activation="sigmoid")]


def _text_batch(batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, TEXT_VOCAB, size=(batch_size, TEXT_LENGTH)).astype(np.int32),
            rng.integers(0, 2, size=(batch_size, 1)).astype(np.float32))


# ---------- attention ----------

ATTN_LENGTH, ATTN_DIM, ATTN_HEADS = 16, 32, 4


def _attention_layers(keras: Any) -> dict[str, Any]:
    return {"attention": keras.layers.MultiHeadAttention(ATTN_HEADS, ATTN_DIM // ATTN_HEADS),
            "norm1": keras.layers.LayerNormalization(), "ff": keras.layers.Dense(ATTN_DIM, activation="relu"),
            "norm2": keras.layers.LayerNormalization(), "pool": keras.layers.GlobalAveragePooling1D(),
            "head": keras.layers.Dense(ATTN_DIM)}


def _attention_block(layers: dict[str, Any], x: Any) -> Any:
    h = layers["norm1"](x + layers["attention"](x, x))
    h = layers["norm2"](h + layers["ff"](h))
    return layers["head"](layers["pool"](h))


def _attention_batch(batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.random((batch_size, ATTN_LENGTH, ATTN_DIM), dtype=np.float32),
            rng.random((batch_size, ATTN_DIM), dtype=np.float32))


# ---------- the three APIs ----------

def _sequential(keras: Any, layers: list[Any], input_shape: tuple[int, ...], dtype: str, name: str) -> Any:
    return keras.Sequential([keras.Input(shape=input_shape, dtype=dtype), *layers], name=name)


def _functional_chain(keras: Any, layers: list[Any], input_shape: tuple[int, ...], dtype: str, name: str) -> Any:
    inputs = keras.Input(shape=input_shape, dtype=dtype)
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x, name=name)


def _subclassed(keras: Any, make_layers: Callable[[Any], Any], forward: Callable[[Any, Any, bool], Any],
                input_shape: tuple[int, ...], dtype: str, name: str) -> Any:
    class ZooSubclass(keras.Model):
        def __init__(self) -> None:
            super().__init__(name=name)
            self.zoo_layers = make_layers(keras)

        def call(self, inputs: Any, training: bool = False) -> Any:
            return forward(self.zoo_layers, inputs, training)

    model = ZooSubclass()
    # built by one inference call on zeros, so the weights exist (in call order, as Functional makes them)
    # before training; inference draws nothing from the dropout RNG
    model(np.zeros((1, *input_shape), dtype=dtype), training=False)
    return model


def _chain(layers: list[Any], x: Any, training: bool) -> Any:
    for layer in layers:
        x = layer(x, training=training) if type(layer).__name__ in ("Dropout", "BatchNormalization") else layer(x)
    return x


def _build(name: str, api: str) -> Any:
    import keras

    if name == "attention":
        shape = (ATTN_LENGTH, ATTN_DIM)
        if api == "functional":
            layers = _attention_layers(keras)
            inputs = keras.Input(shape=shape)
            return keras.Model(inputs, _attention_block(layers, inputs), name="attention_functional")
        return _subclassed(keras, _attention_layers, lambda layers, x, training: _attention_block(layers, x),
                           shape, "float32", "attention_subclassed")
    make, shape, dtype = {"conv": (_conv_layers, CONV_SHAPE, "float32"),
                          "text": (_text_layers, (TEXT_LENGTH,), "int32")}[name]
    if api == "sequential":
        return _sequential(keras, make(keras), shape, dtype, f"{name}_sequential")
    if api == "functional":
        return _functional_chain(keras, make(keras), shape, dtype, f"{name}_functional")
    return _subclassed(keras, make, _chain, shape, dtype, f"{name}_subclassed")


ZOO: dict[str, ZooModel] = {
    "conv": ZooModel("conv", ("sequential", "functional", "subclassed"), "sparse_categorical_crossentropy",
                     lambda api: _build("conv", api), _conv_batch,
                     "Conv2D, BatchNormalization, MaxPooling, Dropout; 28×28×1 images, 10 classes"),
    "text": ZooModel("text", ("sequential", "functional", "subclassed"), "binary_crossentropy",
                     lambda api: _build("text", api), _text_batch,
                     f"Embedding({TEXT_VOCAB}) + GRU(32) over {TEXT_LENGTH} token ids, a binary label"),
    "attention": ZooModel("attention", ("functional", "subclassed"), "mse", lambda api: _build("attention", api),
                          _attention_batch,
                          f"MultiHeadAttention({ATTN_HEADS} heads) + LayerNormalization + feed-forward on "
                          f"{ATTN_LENGTH}×{ATTN_DIM} sequences"),
}

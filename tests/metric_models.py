"""Test-only factories compiled with metrics (fitbench.models.workload keeps them, fresh, unless asked not to)."""

import keras


def two_outputs():
    """Two named outputs, a metric list per output: an AUC object, a name resolved from the loss, and "mae"."""
    inputs = keras.Input((8,))
    model = keras.Model(inputs, {"a": keras.layers.Dense(3, activation="softmax", name="a")(inputs),
                                 "b": keras.layers.Dense(1, name="b")(inputs)})
    model.compile(loss={"a": "categorical_crossentropy", "b": "mse"}, optimizer="adam",
                  metrics={"a": [keras.metrics.AUC(name="auc"), "accuracy"], "b": ["mae"]})
    return model

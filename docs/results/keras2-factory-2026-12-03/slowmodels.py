"""A Keras 2 -> 3 slowdown report's kind of model: a Dense/Dropout stack, its own loss with label smoothing and
an AUC metric, compiled by the factory (keras-team/keras#19953's shape)."""
import keras


def build():
    inputs = keras.Input(shape=(64,))
    x = inputs
    for _ in range(5):
        x = keras.layers.Dense(128, activation="relu")(x)
        x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
                  metrics=[keras.metrics.AUC()])
    return model


def uses_ops():
    model = build()
    keras.ops.mean(keras.ops.ones((2,)))
    return model

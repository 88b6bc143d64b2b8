"""Keras 3 on TensorFlow: what it can do, and its code (TensorFlow imported inside the functions)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from fitbench.backends import Switch
from fitbench.backends.common import BETA_1, BETA_2, EPSILON, activation, is_float, projection, set_thread_env
from fitbench.backends.common import thread_env as _thread_env

NAME = "tensorflow"
FRAMEWORK = "tensorflow"
KERAS_MAJOR = 3
SWITCHES = (Switch("op-determinism", "tensorflow", "tf.config.experimental.enable_op_determinism()",
                   cpu_note="Keras 3 turns jit_compile off under it (keras-team/keras#20315)"),)
SWITCH_TURNS_OFF_XLA = True  # Keras 3 compiles no step under op determinism
SUPPORTS_DISTRIBUTION = False  # keras.distribution's TensorFlow side is in development
MODEL_KINDS = ("seed", "zoo", "factory", "file")  # what --model can name on this row
SUPPORTS_STEPS_PER_EXECUTION = True
SUPPORTS_LAYER_JIT = True
DEFAULT_JIT = True  # jit_compile="auto" on a CPU: XLA
FEED = "tf.data"
RAW_IDIOM = "tf.function(jit_compile) + GradientTape + Adam update"
WARM_IMPORTS = ("tensorflow", "keras")  # imported once by the template its cells fork from (processes.forked)
STEP_TRACES = ("tf.function traces of train_step (TensorFlow traces twice on the first call: 2 is one "
               "compiled step)")
PERSISTENT_CACHE = "XLA's persistent cache of TensorFlow (TF_XLA_FLAGS=--tf_xla_persistent_cache_directory), jit on"


def child_env() -> dict[str, str]:
    return {"KERAS_BACKEND": "tensorflow"}


def thread_env(threads: int | None) -> dict[str, str]:
    return _thread_env(threads)


def apply_threads(threads: int | None) -> None:
    set_thread_env(threads)  # TensorFlow reads its pools' sizes from the environment when its runtime starts


def set_threads(intra_op: int | None, inter_op: int | None) -> dict[str, int]:
    """Fix TF's thread pools (must run before the first op) and return what is in force."""
    import tensorflow as tf

    if intra_op is not None:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
    if inter_op is not None:
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    return thread_settings()


def thread_settings() -> dict[str, int]:
    """TF's pools as configured (0 means TF's own default, all cores)."""
    import tensorflow as tf

    return {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}


def simulated_devices_env(device: str, count: int) -> dict[str, str]:
    return {}


def turn_on(switch: str) -> None:
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()


def in_force(switch: str | None) -> bool:
    from fitbench.adapters.tf_private import op_determinism_enabled

    return op_determinism_enabled()


def seed(value: int) -> None:
    import keras

    keras.utils.set_random_seed(value)


def prepare_training(seed_value: int, intra_op: int, inter_op: int, switch: str | None,
                     seed_with: Callable[[int], None] = seed) -> dict[str, Any]:
    """Pools fixed (before the first op), everything seeded, the switch on when given; what is in force."""
    threads = set_threads(intra_op, inter_op)
    seed_with(seed_value)
    if switch:
        turn_on(switch)
    return {"threads": threads, "op_determinism": in_force(switch)}


def gpu_names() -> list[str]:
    import tensorflow as tf

    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        names.append(str(details.get("device_name", gpu.name)))
    return names


def flush_subnormals() -> None:
    """Nothing: XLA and TensorFlow's own thread pools flush subnormals to zero already."""


def keep_freed_memory() -> bool:
    """Nothing: TensorFlow and XLA allocate through their own allocators; its windows took few page faults either
    way, and 4 processes a side showed no change of its step (docs/noise.md)."""
    return False


class RawStep:
    """The seed network's step in TensorFlow's idiom: a `tf.function(jit_compile=jit)` around GradientTape,
    the Adam update written out as Keras 3 writes it, variables and data as tensors."""

    def __init__(self, weights: list[np.ndarray], x: np.ndarray, y: np.ndarray, spec: Any, jit: bool,
                 device: str = "cpu") -> None:
        import tensorflow as tf

        act = activation(spec.activation, tf.math)
        self.vars = [tf.Variable(w) for w in weights]
        self.m = [tf.Variable(tf.zeros_like(w)) for w in weights]
        self.v = [tf.Variable(tf.zeros_like(w)) for w in weights]
        self.t = tf.Variable(0.0, dtype=tf.float32)
        self.x, self.y = tf.constant(x), tf.constant(y)
        lr = float(spec.learning_rate)
        params, m_slots, v_slots, t = self.vars, self.m, self.v, self.t

        @tf.function(jit_compile=bool(jit))
        def step(x: Any, y: Any) -> Any:
            with tf.GradientTape() as tape:
                h = x
                for kernel, bias in zip(params[0::2], params[1::2]):
                    h = act(tf.matmul(h, kernel) + bias)
                loss = tf.reduce_mean(tf.square(h - y))
            grads = tape.gradient(loss, params)
            t.assign_add(1.0)
            alpha = lr * tf.sqrt(1.0 - tf.pow(BETA_2, t)) / (1.0 - tf.pow(BETA_1, t))
            for p, g, m, v in zip(params, grads, m_slots, v_slots):
                m.assign_add((g - m) * (1.0 - BETA_1))
                v.assign_add((tf.square(g) - v) * (1.0 - BETA_2))
                p.assign_sub(alpha * m / (tf.sqrt(v) + EPSILON))
            return loss

        self.step = step

    def __call__(self) -> float:
        return float(self.step(self.x, self.y).numpy())

    def weights(self) -> list[np.ndarray]:
        return [v.numpy() for v in self.vars]

    def device(self) -> str:
        return self.vars[0].device


def raw_step(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray, spec: Any, jit: bool,
             device: str = "cpu") -> RawStep:
    return RawStep(weights, x, y, spec, jit, device)


def ctl_step(model: Any, loss_fn: Any, optimizer: Any, x: Any, y: Any, jit: bool) -> dict[str, Any]:
    """The custom training loop the Keras guide teaches on TensorFlow: GradientTape around the model in a
    tf.function, the Keras optimizer's apply_gradients."""
    import tensorflow as tf

    x, y = tf.nest.map_structure(tf.constant, (x, y))  # tf.nest: the same loop serves Keras 2 (tf-keras)

    @tf.function(jit_compile=jit)
    def step(x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return {"step": lambda: float(step(x, y)), "flops": None, "flops_source": None,
            "idiom": f"GradientTape around the Keras model in tf.function(jit_compile={jit})"}


def matmul(a_host: np.ndarray, b_host: np.ndarray, device: str) -> Any:
    """One product of the two matrices on the device, waited for (a sum: 4 bytes back, not n² floats)."""
    import tensorflow as tf

    a, b = tf.constant(a_host), tf.constant(b_host)
    return lambda: float(tf.reduce_sum(tf.matmul(a, b)).numpy())


def layer_step(layer: Any, args: tuple[Any, ...], kwargs: dict[str, Any], seed_value: int, jit: bool
               ) -> tuple[list[Any], list[Any]]:
    """A layer's training step alone: its outputs, and the gradients of a seeded projection of them with
    respect to its weights and float inputs; compiled with XLA when `jit`."""
    import keras
    import tensorflow as tf

    inputs = [a for a in args if is_float(a)]

    def step(*differentiable: Any) -> tuple[list[Any], list[Any]]:
        with tf.GradientTape() as tape:
            for t in differentiable:
                tape.watch(t)
            call_args = list(args)
            for k, t in zip([i for i, a in enumerate(args) if is_float(a)], differentiable):
                call_args[k] = t
            outputs = [o for o in keras.tree.flatten(layer(*call_args, **kwargs)) if is_float(o)]
            loss = tf.add_n([tf.reduce_sum(tf.cast(o, "float32") * p)
                             for o, p in zip(outputs, projection(outputs, seed_value))]) if outputs else None
        grads = tape.gradient(loss, [*layer.trainable_variables, *differentiable]) if loss is not None else []
        return outputs, [g for g in grads if g is not None]

    if jit:
        out, grads = tf.function(step, jit_compile=True)(*inputs)
        return list(out), list(grads)
    return step(*inputs)


def apply_gradients(model: Any, optimizer: Any, grads: list[Any]) -> None:
    optimizer.apply(grads, model.trainable_variables)


def step_trace_counter(model: Any) -> Any:
    """What counts the traces of `model`'s training step from now on (none when it runs eagerly)."""
    from fitbench.backends.common import NotTraced, TrainStepTraces

    return NotTraced() if model.run_eagerly else TrainStepTraces(model)


def persistent_cache_env(directory: str) -> dict[str, str]:
    """Before TensorFlow starts: XLA's compiled clusters kept in `directory` (used with jit_compile on)."""
    return {"TF_XLA_FLAGS": f"--tf_xla_persistent_cache_directory={directory}"}


def step_prefixes(model: Any, loss_fn: Any, x: Any, y: Any, jit: bool) -> dict[str, Any]:
    """The training step cut after each of its parts, each a tf.function(jit_compile=jit) of its own, waited for
    (fitbench.measure.breakdown): the forward pass; forward and loss; forward, loss and gradients. Each returns
    one number (a sum), so the host waits for all of it without copying the tensors back."""
    import tensorflow as tf

    x, y = tf.nest.map_structure(tf.constant, (x, y))
    variables = model.trainable_variables

    def total(tensors: Any) -> Any:
        return tf.add_n([tf.reduce_sum(tf.cast(t, "float32")) for t in tf.nest.flatten(tensors) if t is not None])

    @tf.function(jit_compile=jit)
    def forward(x: Any) -> Any:
        return total(model(x, training=True))

    @tf.function(jit_compile=jit)
    def loss(x: Any, y: Any) -> Any:
        return loss_fn(y, model(x, training=True))

    @tf.function(jit_compile=jit)
    def gradients(x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            value = loss_fn(y, model(x, training=True))
        return total(tape.gradient(value, variables))

    return {"forward": lambda: float(forward(x)), "forward+loss": lambda: float(loss(x, y)),
            "gradients": lambda: float(gradients(x, y))}

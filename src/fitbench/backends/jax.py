"""Keras 3 on JAX: what it can do, and its code (JAX imported inside the functions)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from fitbench.backends import Switch
from fitbench.backends.common import BETA_1, BETA_2, EPSILON, activation, is_float, projection, set_thread_env
from fitbench.backends.common import thread_env as _thread_env

# XLA's flags (JAX reads XLA_FLAGS once, when it starts): deterministic GPU reductions and scatters; or none of
# the nondeterministic GPU ops at all
DETERMINISTIC_OPS = "--xla_gpu_deterministic_ops=true"
EXCLUDE_NONDETERMINISTIC = "--xla_gpu_exclude_nondeterministic_ops=true"

NAME = "jax"
FRAMEWORK = "jax"
KERAS_MAJOR = 3
SWITCHES = (
    Switch("deterministic-ops", "jax", f"XLA_FLAGS={DETERMINISTIC_OPS}", {"XLA_FLAGS": DETERMINISTIC_OPS},
           cpu_note="a GPU flag of XLA: on a CPU it changes nothing"),
    Switch("exclude-nondeterministic-ops", "jax", f"XLA_FLAGS={EXCLUDE_NONDETERMINISTIC}",
           {"XLA_FLAGS": EXCLUDE_NONDETERMINISTIC}, cpu_note="a GPU flag of XLA: on a CPU it changes nothing"),
)
SWITCH_TURNS_OFF_XLA = False
SUPPORTS_DISTRIBUTION = True  # keras.distribution runs on XLA SPMD
MODEL_KINDS = ("seed", "zoo", "factory", "file")  # what --model can name on this row
SUPPORTS_STEPS_PER_EXECUTION = True
SUPPORTS_LAYER_JIT = True
DEFAULT_JIT = True
FEED = "python generator"  # fit gets a generator of the one batch: the cell never imports TensorFlow
RAW_IDIOM = "jax.jit(value_and_grad + Adam update)"
WARM_IMPORTS = ("jax", "keras")  # imported once by the template its cells fork from (processes.forked)
STEP_TRACES = "jax.jit traces of train_step (each a cache miss of the compiled step)"
PERSISTENT_CACHE = "JAX's persistent compilation cache (JAX_COMPILATION_CACHE_DIR), every compile kept"
SIMULATED_DEVICES = "JAX_NUM_CPU_DEVICES"  # what Keras' own CI uses for its multi-device tests


def child_env() -> dict[str, str]:
    return {"KERAS_BACKEND": "jax"}


def thread_env(threads: int | None) -> dict[str, str]:
    return _thread_env(threads)


def apply_threads(threads: int | None) -> None:
    set_thread_env(threads)  # XLA's CPU client reads XLA_FLAGS when JAX starts


def thread_settings() -> dict[str, int]:
    return {}  # XLA's CPU thread pool has no public setting: recorded as unknown


def simulated_devices_env(device: str, count: int) -> dict[str, str]:
    """What a child with `count` devices needs before JAX starts: simulated CPU devices."""
    return {SIMULATED_DEVICES: str(count)} if count > 1 and device == "cpu" else {}


def turn_on(switch: str) -> None:
    """Nothing to call: the parent put the switch's XLA_FLAGS in place before JAX started, and XLA reads them
    once, so setting them now would be a lie."""


def in_force(switch: str | None) -> bool:
    flags = os.environ.get("XLA_FLAGS", "")
    chosen = [s for s in SWITCHES if switch is None or s.name == switch]
    return any(s.env["XLA_FLAGS"] in flags for s in chosen)


def seed(value: int) -> None:
    from fitbench.models.seed import seed_keras

    seed_keras(value)


def prepare_training(seed_value: int, intra_op: int, inter_op: int, switch: str | None) -> dict[str, Any]:
    """Everything seeded (XLA's pool has no setting; the switch is the environment's)."""
    seed(seed_value)
    return {"threads": {}, "op_determinism": in_force(switch) if switch else False,
            "xla_flags": os.environ.get("XLA_FLAGS", "")}


def gpu_names() -> list[str]:
    import jax

    try:
        return [str(d.device_kind) for d in jax.devices("gpu")]
    except RuntimeError:  # no CUDA-enabled jaxlib, or no GPU it can use
        return []


def flush_subnormals() -> None:
    """Nothing: XLA flushes subnormals to zero."""


def keep_freed_memory() -> bool:
    """Nothing: XLA allocates through its own allocator; its windows took few page faults either
    way, and 4 processes a side showed no change of its step (docs/noise.md)."""
    return False


class RawStep:
    """The seed network's step in JAX's idiom: `jax.value_and_grad` plus the Adam update, the whole step under
    `jax.jit` when jit is on (op-by-op eager dispatch when it is off, as Keras on JAX does)."""

    def __init__(self, weights: list[np.ndarray], x: np.ndarray, y: np.ndarray, spec: Any, jit: bool,
                 device: str = "cpu") -> None:
        import jax
        import jax.numpy as jnp

        self.jax = jax
        act = activation(spec.activation, jax.nn)
        lr = float(spec.learning_rate)
        dev = jax.devices()[0]
        self.params = [jax.device_put(w, dev) for w in weights]
        self.m = [jnp.zeros_like(p) for p in self.params]
        self.v = [jnp.zeros_like(p) for p in self.params]
        self.t = jnp.zeros((), jnp.float32)
        self.x, self.y = jax.device_put(x, dev), jax.device_put(y, dev)

        def loss_fn(params: list[Any], x: Any, y: Any) -> Any:
            h = x
            for kernel, bias in zip(params[0::2], params[1::2]):
                h = act(h @ kernel + bias)
            return jnp.mean(jnp.square(h - y))

        def step(params: list[Any], m: list[Any], v: list[Any], t: Any, x: Any, y: Any) -> Any:
            loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
            t = t + 1.0
            alpha = lr * jnp.sqrt(1.0 - BETA_2 ** t) / (1.0 - BETA_1 ** t)
            m = [mi + (g - mi) * (1.0 - BETA_1) for mi, g in zip(m, grads)]
            v = [vi + (jnp.square(g) - vi) * (1.0 - BETA_2) for vi, g in zip(v, grads)]
            params = [p - alpha * mi / (jnp.sqrt(vi) + EPSILON) for p, mi, vi in zip(params, m, v)]
            return params, m, v, t, loss

        self.step = jax.jit(step, donate_argnums=(0, 1, 2)) if jit else step

    def __call__(self) -> float:
        self.params, self.m, self.v, self.t, loss = self.step(self.params, self.m, self.v, self.t, self.x, self.y)
        self.jax.block_until_ready(self.params)
        return float(loss)

    def weights(self) -> list[np.ndarray]:
        return [np.asarray(p) for p in self.params]

    def device(self) -> str:
        return str(next(iter(self.params[0].devices())))


def raw_step(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray, spec: Any, jit: bool,
             device: str = "cpu") -> RawStep:
    return RawStep(weights, x, y, spec, jit, device)


def ctl_step(model: Any, loss_fn: Any, optimizer: Any, x: Any, y: Any, jit: bool) -> dict[str, Any]:
    """The custom training loop the Keras guide teaches on JAX: stateless_call + jax.value_and_grad +
    optimizer.stateless_apply, the whole step under jax.jit when jit is on; XLA's cost analysis of the
    compiled step gives its FLOPs."""
    import jax
    import jax.numpy as jnp
    import keras

    optimizer.build(model.trainable_variables)
    x, y = keras.tree.map_structure(jnp.asarray, (x, y))

    def loss_and_state(trainable: Any, non_trainable: Any, x: Any, y: Any) -> Any:
        pred, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        return loss_fn(y, pred), non_trainable

    grad_fn = jax.value_and_grad(loss_and_state, has_aux=True)

    def train_step(state: Any, x: Any, y: Any) -> Any:
        trainable, non_trainable, opt_vars = state
        (loss, non_trainable), grads = grad_fn(trainable, non_trainable, x, y)
        trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
        return loss, (trainable, non_trainable, opt_vars)

    state = [([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
              [v.value for v in optimizer.variables])]
    # compiled either way for XLA's count of the step's FLOPs; run compiled only with jit on
    compiled = jax.jit(train_step).lower(state[0], x, y).compile()
    flops, source = xla_flops(compiled)
    run = compiled if jit else train_step

    def step() -> float:
        loss, state[0] = run(state[0], x, y)
        return float(loss)

    return {"step": step, "flops": flops, "flops_source": source,
            "idiom": "stateless_call + jax.value_and_grad + optimizer.stateless_apply"
                     + (" under jax.jit" if jit else ", op by op")}


def xla_flops(compiled: Any) -> tuple[int | None, str | None]:
    """FLOPs of a compiled JAX step from XLA's cost analysis (a dict, or a list of one per computation)."""
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # not offered by every jaxlib or platform: no number rather than a guess
        return None, None
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    flops = (analysis or {}).get("flops")
    return (int(flops), "xla_cost_analysis") if flops and flops > 0 else (None, None)


def matmul(a_host: np.ndarray, b_host: np.ndarray, device: str) -> Any:
    import jax
    import jax.numpy as jnp

    dev = jax.devices()[0]
    a, b = jax.device_put(a_host, dev), jax.device_put(b_host, dev)
    product = jax.jit(lambda p, q: jnp.sum(p @ q))
    return lambda: float(product(a, b))


def layer_step(layer: Any, args: tuple[Any, ...], kwargs: dict[str, Any], seed_value: int, jit: bool
               ) -> tuple[list[Any], list[Any]]:
    """A layer's training step alone, stateless: outputs, and the gradients of a seeded projection of them
    with respect to its weights and float inputs; under jax.jit when `jit`."""
    import jax
    import jax.numpy as jnp
    import keras

    float_at = [i for i, a in enumerate(args) if is_float(a)]
    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def loss_fn(weights: list[Any], differentiable: list[Any]) -> Any:
        call_args = list(args)
        for k, t in zip(float_at, differentiable):
            call_args[k] = t
        out, _ = layer.stateless_call(weights, non_trainable, *call_args, **kwargs)
        outputs = [o for o in keras.tree.flatten(out) if is_float(o)]
        projections = projection(outputs, seed_value)
        total = sum(jnp.sum(o.astype("float32") * p) for o, p in zip(outputs, projections)) if outputs else 0.0
        return total, outputs

    grad_fn = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)
    if jit:
        grad_fn = jax.jit(grad_fn)
    (_, outputs), (g_weights, g_inputs) = grad_fn(trainable, [args[i] for i in float_at])
    return list(outputs), [*g_weights, *g_inputs]


def apply_gradients(model: Any, optimizer: Any, grads: list[Any]) -> None:
    """The optimizer's stateless update, written back into the model's and the optimizer's variables."""
    variables = model.trainable_variables
    trainable, opt_vars = optimizer.stateless_apply([v.value for v in optimizer.variables], grads,
                                                    [v.value for v in variables])
    for v, value in zip(variables, trainable):
        v.assign(value)
    for v, value in zip(optimizer.variables, opt_vars):
        v.assign(value)


def step_trace_counter(model: Any) -> Any:
    """What counts the traces of `model`'s training step from now on (none when Keras runs it op by op)."""
    from fitbench.backends.common import NotTraced, TrainStepTraces

    return TrainStepTraces(model) if model.jit_compile and not model.run_eagerly else NotTraced()


def persistent_cache_env(directory: str) -> dict[str, str]:
    """Before JAX starts: its compilation cache in `directory`, every executable kept (by default JAX keeps
    only those that took a second or more to compile, which the seed network's step does not on a CPU)."""
    return {"JAX_COMPILATION_CACHE_DIR": directory, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"}


def step_prefixes(model: Any, loss_fn: Any, x: Any, y: Any, jit: bool) -> dict[str, Any]:
    """The training step cut after each of its parts, stateless as Keras runs it on JAX, each under its own
    jax.jit when jit is on (fitbench.measure.breakdown): the forward pass; forward and loss; forward, loss and
    jax.value_and_grad. Each waited for until its whole result is ready."""
    import jax
    import jax.numpy as jnp
    import keras

    x, y = keras.tree.map_structure(jnp.asarray, (x, y))
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def forward(trainable: Any, x: Any) -> Any:
        pred, _ = model.stateless_call(trainable, non_trainable, x, training=True)
        return pred

    def loss(trainable: Any, x: Any, y: Any) -> Any:
        return loss_fn(y, forward(trainable, x))

    compile_ = jax.jit if jit else (lambda f: f)
    parts = {"forward": compile_(forward), "forward+loss": compile_(loss),
             "gradients": compile_(jax.value_and_grad(loss))}
    args = {"forward": (trainable, x), "forward+loss": (trainable, x, y), "gradients": (trainable, x, y)}

    def waited(name: str) -> Any:
        def call() -> float:
            jax.block_until_ready(parts[name](*args[name]))
            return 0.0

        return call

    return {name: waited(name) for name in parts}

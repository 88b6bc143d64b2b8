"""Child side of `fitbench explain`: train one stream step by step and fingerprint everything a step touches.

A stream is one training that should be identical to another (fitbench.determinism.explain pairs them).
Each training step is replayed with the backend's own eager loop around the Keras model — TensorFlow's
`GradientTape`, JAX's `stateless_call` + `value_and_grad` + `optimizer.stateless_apply`, PyTorch's
`loss.backward()` and the Keras optimizer — because the values inside a step (every layer's output, every
gradient, the optimizer's slots before they are applied) cannot be read out of `fit`. The model, its seeded
weights, loss, optimizer and batches (in order, as `fit(shuffle=False)`) are those of `fitbench determinism`.
jit is off: a compiled step (XLA, torch.compile) fuses the layers' outputs away.

Every step yields entries in execution order, each (phase, name, array): PHASES below. The child hashes
them all and keeps the arrays of one step only: the step `dump_step` names, or, given the other stream's
hashes, the first step that differs from them (then it stops there).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from fitbench.determinism.compare import nudge_one_ulp, sha256_arrays
from fitbench.report.document import Document


@dataclass(frozen=True)
class Stream(Document):
    """One training to instrument (crosses into the child as a dict)."""

    name: str
    api: str
    backend: str
    model: dict[str, Any]
    seed: int = 0
    epochs: int = 3
    samples: int = 1
    batch_size: int = 1
    op_determinism: bool = True
    nudge: bool = False
    legacy_shared: bool | None = None  # the replay's streams: one shared legacy optimizer, or a fresh one
    device_count: int = 1  # >1: data-parallel over this many devices (keras.distribution, JAX)


    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Stream":
        return cls(**d)


INITIAL, DATA, FORWARD, LOSS, GRADIENT, OPTIMIZER, UPDATE = (
    "initial weights", "data", "forward", "loss", "gradient", "optimizer state", "update")
PHASES = (INITIAL, DATA, FORWARD, LOSS, GRADIENT, OPTIMIZER, UPDATE)
ABSENT = "absent"  # an optimizer slot that does not exist yet (the legacy optimizer makes them lazily)

Entry = tuple[str, str, Any]  # phase, name, array (None: absent)


def fingerprint(entry: Entry) -> list[Any]:
    """[phase, name, sha256, shape] of one entry: JSON-able, compared across processes."""
    phase, name, value = entry
    if value is None:
        return [phase, name, ABSENT, None]
    array = np.asarray(value)
    return [phase, name, sha256_arrays([array]), list(array.shape)]


def comparable(prints: list[list[Any]]) -> list[tuple[Any, ...]]:
    """A step's fingerprints without the names: two APIs name their layers and variables differently."""
    return [(phase, sha, tuple(shape) if shape is not None else None) for phase, _, sha, shape in prints]


class LayerOutputs:
    """Record every top-level layer's output, in call order, by wrapping the layer's `call` on the instance.

    The wrapper is what Keras calls from `Layer.__call__` (Keras 3 and tf-keras alike), so Sequential,
    Functional and subclassed models are seen the same way; nested layers inside a layer are that layer's
    business (its output is recorded)."""

    def __init__(self, model: Any, to_numpy: Callable[[Any], np.ndarray]) -> None:
        self.to_numpy = to_numpy
        self.outputs: list[tuple[str, Any]] = []
        self.layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
        for layer in self.layers:
            layer.call = self._wrap(layer, layer.call)

    def _wrap(self, layer: Any, call: Callable[..., Any]) -> Callable[..., Any]:
        def recorded(*args: Any, **kwargs: Any) -> Any:
            out = call(*args, **kwargs)
            self.outputs.append((layer.name, out))
            return out
        return recorded

    def take(self) -> list[tuple[str, list[Any]]]:
        """The outputs since the last take: (layer name, its output tensors), raw (maybe tracers)."""
        import keras

        taken, self.outputs = self.outputs, []
        return [(name, keras.tree.flatten(out)) for name, out in taken]


def _forward_entries(taken: list[tuple[str, list[Any]]], to_numpy: Callable[[Any], np.ndarray]) -> list[Entry]:
    entries: list[Entry] = []
    for index, (name, tensors) in enumerate(taken):
        for k, t in enumerate(tensors):
            entries.append((FORWARD, f"{index}:{name}" + (f"[{k}]" if len(tensors) > 1 else ""), to_numpy(t)))
    return entries


def _variable_name(index: int, variable: Any) -> str:
    return f"{index}:{getattr(variable, 'path', None) or variable.name}"


class Keras3Stepper:
    """One eager training step of a Keras 3 model on its backend, yielding the step's entries."""

    def __init__(self, model: Any, backend: str) -> None:
        import keras

        self.model, self.backend = model, backend
        loss = keras.losses.get(model.loss) if isinstance(model.loss, str) else model.loss
        self.loss_fn = lambda y, pred: keras.ops.mean(loss(y, pred))  # fit's batch mean of the per-sample loss
        self.optimizer = model.optimizer
        if not self.optimizer.built:
            self.optimizer.build(model.trainable_variables)  # fit does this before its first step
        self.to_numpy = lambda t: np.array(keras.ops.convert_to_numpy(t))
        self.hooks = LayerOutputs(model, self.to_numpy)

    def weights(self) -> list[Entry]:
        return [(INITIAL, _variable_name(i, v), self.to_numpy(v.value)) for i, v in enumerate(self.model.variables)]

    def _optimizer_state(self) -> list[Entry]:
        return [(OPTIMIZER, _variable_name(i, v), self.to_numpy(v.value))
                for i, v in enumerate(self.optimizer.variables)]

    def step(self, x: Any, y: Any) -> list[Entry]:
        import keras

        model = self.model
        entries: list[Entry] = [(DATA, f"x[{i}]", np.asarray(a)) for i, a in enumerate(keras.tree.flatten(x))]
        entries += [(DATA, f"y[{i}]", np.asarray(a)) for i, a in enumerate(keras.tree.flatten(y))]
        before = [self.to_numpy(v.value) for v in model.trainable_variables]
        loss, grads, taken = getattr(self, f"_grads_{self.backend}")(x, y)
        entries += _forward_entries(taken, self.to_numpy)
        entries.append((LOSS, "loss", self.to_numpy(loss)))
        entries += [(GRADIENT, _variable_name(i, v), self.to_numpy(g))
                    for i, (v, g) in enumerate(zip(model.trainable_variables, grads))]
        entries += self._optimizer_state()
        self._apply(grads)
        entries += [(UPDATE, _variable_name(i, v), self.to_numpy(v.value) - b)
                    for i, (v, b) in enumerate(zip(model.trainable_variables, before))]
        entries += [(UPDATE, _variable_name(i, v), self.to_numpy(v.value))
                    for i, v in enumerate(model.non_trainable_variables)]
        return entries

    def _grads_tensorflow(self, x: Any, y: Any) -> tuple[Any, list[Any], list[Any]]:
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = self.loss_fn(y, self.model(x, training=True))
        grads = tape.gradient(loss, self.model.trainable_variables)
        return loss, grads, self.hooks.take()

    def _grads_torch(self, x: Any, y: Any) -> tuple[Any, list[Any], list[Any]]:
        self.model.zero_grad()
        loss = self.loss_fn(y, self.model(x, training=True))
        taken = [(name, [t.detach() for t in ts]) for name, ts in self.hooks.take()]
        loss.backward()
        grads = [v.value.grad.detach().clone() for v in self.model.trainable_variables]
        return loss.detach(), grads, taken

    def _grads_jax(self, x: Any, y: Any) -> tuple[Any, list[Any], list[Any]]:
        import jax
        import keras

        model = self.model
        distribution = keras.distribution.distribution()
        if distribution is not None:  # the batch split over the devices, as fit's data adapter lays it out
            x, y = keras.tree.map_structure(lambda a: keras.distribution.distribute_tensor(
                a, distribution.get_data_layout(a.shape)), (x, y))

        # stateless_call hands keywords to `call` as they are; a `call` without `training` gets none
        training = {"training": True} if _takes_training(model) else {}

        def loss_and_state(trainable: Any, non_trainable: Any) -> Any:
            pred, non_trainable = model.stateless_call(trainable, non_trainable, x, **training)
            return self.loss_fn(y, pred), (non_trainable, self.hooks.take())  # layer outputs leave as aux

        (loss, (non_trainable, taken)), grads = jax.value_and_grad(loss_and_state, has_aux=True)(
            [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
        for v, value in zip(model.non_trainable_variables, non_trainable):
            v.assign(value)
        return loss, grads, taken

    def _apply(self, grads: list[Any]) -> None:
        from fitbench import backends

        backends.get(self.backend).apply_gradients(self.model, self.optimizer, grads)


def _takes_training(model: Any) -> bool:
    import inspect

    params = inspect.signature(model.call).parameters.values()
    return any(p.name == "training" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


class LegacyStepper:
    """One eager training step of a tf-keras (Keras 2) model with its legacy optimizer: GradientTape and
    `apply_gradients`; the optimizer's state is its step counter and each of this model's slots (absent
    until the optimizer has made them)."""

    def __init__(self, model: Any, optimizer: Any) -> None:
        import tensorflow as tf

        self.model, self.optimizer, self.tf = model, optimizer, tf
        self.loss_fn = lambda y, pred: tf.reduce_mean(tf.square(tf.cast(y, pred.dtype) - pred))  # the seed's MSE
        self.to_numpy = lambda t: np.array(t.numpy() if hasattr(t, "numpy") else t)
        self.hooks = LayerOutputs(model, self.to_numpy)

    def weights(self) -> list[Entry]:
        return [(INITIAL, _variable_name(i, v), v.numpy()) for i, v in enumerate(self.model.variables)]

    def _optimizer_state(self) -> list[Entry]:
        entries: list[Entry] = [(OPTIMIZER, "iterations", self.optimizer.iterations.numpy())]
        for i, v in enumerate(self.model.trainable_variables):
            for slot in self.optimizer.get_slot_names() or ("m", "v"):
                try:
                    value = self.optimizer.get_slot(v, slot).numpy()
                except (KeyError, ValueError, AttributeError):
                    value = None  # not made yet for this variable
                entries.append((OPTIMIZER, f"{_variable_name(i, v)}/{slot}", value))
        return entries

    def step(self, x: Any, y: Any) -> list[Entry]:
        tf, model = self.tf, self.model
        entries: list[Entry] = [(DATA, "x[0]", np.asarray(x)), (DATA, "y[0]", np.asarray(y))]
        before = [v.numpy() for v in model.trainable_variables]
        with tf.GradientTape() as tape:
            loss = self.loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        entries += _forward_entries(self.hooks.take(), self.to_numpy)
        entries.append((LOSS, "loss", loss.numpy()))
        entries += [(GRADIENT, _variable_name(i, v), g.numpy())
                    for i, (v, g) in enumerate(zip(model.trainable_variables, grads))]
        entries += self._optimizer_state()
        self.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        entries += [(UPDATE, _variable_name(i, v), v.numpy() - b)
                    for i, (v, b) in enumerate(zip(model.trainable_variables, before))]
        return entries


def batches(x: Any, y: Any, batch_size: int) -> Iterator[tuple[Any, Any]]:
    """fit(shuffle=False)'s batches: in order, the last one short."""
    import keras

    rows = len(keras.tree.flatten(x)[0])
    for start in range(0, rows, batch_size):
        cut = slice(start, min(rows, start + batch_size))
        yield keras.tree.map_structure(lambda a, cut=cut: a[cut], (x, y))


def trace_stream(stream: dict[str, Any], out_dir: str, other_hashes: str | None = None,
                 dump_step: int | None = None) -> dict[str, Any]:
    """Train one stream (a Stream as a dict) step by step in this process.

    Hashes of every entry of every step go to `<out_dir>/<name>.hashes.jsonl`. The arrays of one step go to
    `<out_dir>/<name>.step<k>.npz`: step `dump_step`; or, with `other_hashes` (the other stream's file), the
    first step whose hashes differ from it, after which the stream stops."""

    st = Stream.from_dict(stream)
    stepper, x, y = _prepare(st)
    other = read_hashes(other_hashes) if other_hashes else None
    hashes_path = os.path.join(out_dir, f"{st.name}.hashes.jsonl")
    steps_done, dumped = 0, None
    with open(hashes_path, "w") as log:
        step = 0
        for entries in _steps(stepper, st, x, y):
            prints = [fingerprint(e) for e in entries]
            log.write(json.dumps(prints) + "\n")
            differs = other is not None and (step >= len(other) or comparable(other[step]) != comparable(prints))
            if step == dump_step or differs:
                dumped = os.path.join(out_dir, f"{st.name}.step{step}.npz")
                np.savez(dumped, **{str(i): (np.asarray(v) if v is not None else np.zeros(0, np.float32))
                                    for i, (_, _, v) in enumerate(entries)})
            steps_done = step + 1
            if differs or (dump_step is not None and step >= dump_step):
                break
            step += 1
    return {"name": st.name, "steps": steps_done, "hashes": hashes_path, "dumped": dumped,
            "dumped_step": (steps_done - 1) if dumped else None}


def read_hashes(path: str) -> list[list[Any]]:
    """A stream's hash log: one list of fingerprints per step."""
    with open(path) as f:
        return [json.loads(line) for line in f]


def _steps(stepper: Any, st: Any, x: Any, y: Any) -> Iterator[list[Entry]]:
    """Step 0 starts with the initial weights; then every batch of every epoch, in order."""
    initial = stepper.weights()
    for _ in range(st.epochs):
        for xb, yb in batches(x, y, st.batch_size):
            yield initial + stepper.step(xb, yb)
            initial = []


def _prepare(st: Any) -> tuple[Any, Any, Any]:
    """Build, seed and compile the stream's model the way `fitbench determinism` does; its data."""
    from fitbench.determinism.train import enable_determinism

    enable_determinism(st.seed, 2, 1, st.op_determinism, st.backend)
    if st.device_count > 1:  # before the model is built: its variables are laid out on the mesh
        from fitbench.measure.distributed import use_data_parallel

        use_data_parallel(st.device_count)
    if st.legacy_shared is not None:
        return _prepare_replay(st)
    from fitbench.models.choice import SEED, ModelChoice
    from fitbench.models.seed_data import seed_input, seed_target, synthetic_batch
    from fitbench.models.workload import Workload

    workload = Workload(ModelChoice.from_dict(st.model), st.seed)
    model = workload.build(st.api)
    if st.nudge:
        model.set_weights(nudge_one_ulp(model.get_weights()))
    workload.compile(model, jit=False)
    if workload.kind == SEED:
        spec = workload.spec
        x, y = ((seed_input(st.seed, spec.input_dim), seed_target()) if st.samples == 1
                else synthetic_batch(spec, st.samples, st.seed))
    else:
        x, y = workload.batch(model, st.samples)
    return Keras3Stepper(model, st.backend), x, y


def _prepare_replay(st: Any) -> tuple[Any, Any, Any]:
    """The seed question's second model: Sequential, after Functional trained `st.epochs` epochs with
    `fit`, with the legacy tf-keras optimizer shared with it (legacy_shared=True) or a fresh one."""
    from fitbench.adapters import tf_keras
    from fitbench.models.seed import ModelSpec, build_model, make_optimizer
    from fitbench.models.seed_data import seed_input, seed_target

    keras2 = tf_keras.keras2()
    spec = ModelSpec()
    x, y = seed_input(st.seed, spec.input_dim), seed_target()
    functional = build_model("functional", spec, seed=st.seed, keras_module=keras2)
    sequential = build_model("sequential", spec, seed=st.seed, keras_module=keras2)
    first = make_optimizer(spec, keras2, legacy=True)
    functional.compile(loss="mse", optimizer=first)
    functional.fit(x, y, epochs=st.epochs, verbose=0, shuffle=False)
    optimizer = first if st.legacy_shared else make_optimizer(spec, keras2, legacy=True)
    return LegacyStepper(sequential, optimizer), x, y

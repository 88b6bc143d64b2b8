"""Child side of `--model`: build, compile and feed the chosen model (Keras imported here, in the child).

`Workload(choice, seed)` gives every command the same four things for any model: `build(api)` (seeded,
fresh), `compile(model, jit, steps_per_execution)` (a fresh optimizer every time), `batch(batch_size)` (the
training data) and `flops(batch_size)` (analytic for the seed network, else None: the CTL floor may measure
it). `describe(choice, backend)` runs in a fresh process before a command starts and turns a bad model
into one line (ModelError), so the command exits 2 before any cell runs.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from fitbench.models.choice import FACTORY, FILE, SEED, ZOO, ModelChoice
from fitbench.models.seed import ModelSpec, build_model, compile_model, make_optimizer, seed_keras, train_step_flops


class ModelError(ValueError):
    """The model or its data cannot be used as named (reported as one line, exit 2)."""


def _as_arrays(value: Any) -> Any:
    """x or y as numpy: one array, or a list/tuple/dict of them (several inputs or outputs)."""
    if isinstance(value, dict):
        return {k: np.asarray(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [np.asarray(v) for v in value]
    return np.asarray(value)


def first_rows(value: Any, rows: int) -> Any:
    """The first `rows` rows of x (one array, or a list/dict of them)."""
    return _take(value, rows)


def _take(value: Any, batch_size: int) -> Any:
    """The first batch_size rows (wrapping around when the data has fewer)."""
    def cut(a: np.ndarray) -> np.ndarray:
        return np.resize(a, (batch_size, *a.shape[1:])) if a.shape[0] < batch_size else a[:batch_size]
    if isinstance(value, dict):
        return {k: cut(v) for k, v in value.items()}
    if isinstance(value, list):
        return [cut(v) for v in value]
    return cut(value)


class Workload:
    """One model choice, ready to build, compile and feed in this process."""

    def __init__(self, choice: ModelChoice, seed: int = 0, spec: ModelSpec | None = None,
                 keras_module: Any = None) -> None:
        self.choice, self.seed = choice, seed
        self.kind = choice.kind
        # None: Keras 3; tf_keras (Keras 2): the seed network, or a factory or file whose `keras` is tf-keras
        self.keras_module = keras_module
        if keras_module is not None and self.kind == ZOO:
            raise ModelError(f"--model {choice.source}: the zoo is Keras 3 code; the tf-keras row (Keras 2) "
                             "runs the seed network, a factory or a .keras file")
        if keras_module is not None and self.kind in (FACTORY, FILE):
            from fitbench.adapters.tf_keras import as_keras

            as_keras()  # before the user's module is imported: its `import keras` is Keras 2 here
        self.spec = spec or ModelSpec(widths=tuple(choice.widths))  # the seed network's (seed only)
        self._factory: Any = None
        if self.kind == FACTORY:
            module_name, func_name = choice.source.split(":")
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise ModelError(f"--model {choice.source}: cannot import {module_name}: {exc}") from None
            self._factory = getattr(module, func_name, None)
            if not callable(self._factory):
                raise ModelError(f"--model {choice.source}: {module_name} has no function {func_name!r}")
        elif self.kind == ZOO:
            from fitbench.models.zoo import ZOO as zoo

            self._zoo = zoo[choice.source]

    # ---------- build and compile ----------

    def build(self, api: str) -> Any:
        """A fresh model, seeded first (so two builds start from the same weights when the model allows it)."""
        if self.kind == SEED:
            return build_model(api, self.spec, seed=self.seed, keras_module=self.keras_module)
        import keras

        seed_keras(self.seed, self.keras_module)
        if self.kind == ZOO:
            return self._zoo.build(api)
        if self.kind == FILE:
            try:
                model = keras.saving.load_model(self.choice.source, compile=True)
            except Exception as exc:  # any loader failure is a bad file, said in one line
                hint = ("; a file saved by Keras 3 does not load in Keras 2: save it from tf-keras, or give a "
                        "factory" if self.keras_module is not None else "")
                raise ModelError(f"--model {self.choice.source}: not a Keras model file: "
                                 f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{hint}") \
                    from None
        else:
            model = self._factory()
        if not isinstance(model, keras.Model):
            raise ModelError(f"--model {self.choice.source}: returned {type(model).__name__}, not a keras.Model")
        return model

    def _loss(self, model: Any) -> Any:
        if self.kind == ZOO:
            return self._zoo.loss
        if getattr(model, "loss", None) is not None:  # compiled by the factory or saved compiled
            return model.loss
        return self.choice.loss or "mse"

    def _optimizer(self, model: Any) -> Any:
        """A fresh optimizer every time (sharing one is the seed question's bug): the model's own, rebuilt
        from its config, else --optimizer, else Adam."""
        import keras

        if self.kind == SEED:
            return None  # compile_model makes the seed's Adam(0.01)
        existing = getattr(model, "optimizer", None)
        if existing is not None and self.kind != ZOO:
            return existing.__class__.from_config(existing.get_config())
        return keras.optimizers.get(self.choice.optimizer or "adam")

    @property
    def keras(self) -> Any:
        """The Keras this workload builds with: Keras 3, or tf-keras on the Keras 2 row."""
        if self.keras_module is not None:
            return self.keras_module
        import keras

        return keras

    def batch_loss(self, model: Any) -> Any:
        """The compiled model's loss as `(y, pred) -> the batch mean`, as fit reduces it (a loss named by a
        string is Keras' per-sample function), for a custom training loop."""
        keras = self.keras
        loss = keras.losses.get(model.loss) if isinstance(model.loss, str) else model.loss
        # Keras 3 reduces with keras.ops; Keras 2 has no keras.ops, its backend module has mean
        mean = keras.backend.mean if self.keras_module is not None else keras.ops.mean
        return lambda y, pred: mean(loss(y, pred))

    def _metrics(self, model: Any) -> Any:
        """Fresh copies of the metrics the factory or file compiled the model with, as compile takes them (a
        list, or a dict per output; None for the seed and the zoo, or where Keras cannot describe them): fit's
        cost includes them, as it does in the user's own fit, and no state is shared with the factory's
        compile. A name ("accuracy") stays a name: compile resolves it from the loss and the outputs."""
        def fresh(value: Any) -> Any:
            if isinstance(value, dict) and "class_name" in value:  # a serialized metric object
                return self.keras.metrics.get(value)
            if isinstance(value, dict):
                return {k: fresh(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [fresh(v) for v in value]
            return value

        try:
            config = model.get_compile_config() if getattr(model, "optimizer", None) is not None else None
            return fresh((config or {}).get("metrics")) or None
        except Exception:  # a metric Keras cannot rebuild from its config: compile keeps the model's own
            return None

    def compile(self, model: Any, jit: bool, steps_per_execution: int = 1, keep_metrics: bool = True) -> Any:
        """Compiled for fit as the cell asks (jit, steps per execution), with the model's own loss and a fresh
        optimizer; with its own metrics unless `keep_metrics` is False (fitbench breakdown's "no metrics")."""
        if self.kind == SEED:
            return compile_model(model, jit, self.spec, optimizer=make_optimizer(self.spec, self.keras_module),
                                 steps_per_execution=steps_per_execution)
        # compile without `metrics` keeps those of an earlier compile (the factory's own objects): an empty list is
        # how to drop them, even those whose config Keras could not rebuild
        if keep_metrics:
            metrics = self._metrics(model)
            chosen = {"metrics": metrics} if metrics else {}
        else:
            chosen = {"metrics": []} if getattr(model, "optimizer", None) is not None else {}
        model.compile(loss=self._loss(model), optimizer=self._optimizer(model), jit_compile=bool(jit),
                      steps_per_execution=int(steps_per_execution), **chosen)
        return model

    # ---------- data ----------

    def batch(self, model: Any, batch_size: int) -> tuple[Any, Any]:
        """(x, y) of batch_size rows: --data, the factory's make_batch, the zoo's, or seeded synthetic data
        built from the model's inputs and outputs."""
        from fitbench.models.seed_data import synthetic_batch

        if self.choice.data:
            with np.load(self.choice.data) as npz:
                x, y = _npz_part(npz, "x"), _npz_part(npz, "y")
            check_rows(x, y)
            return _take(x, batch_size), _take(y, batch_size)
        if self.kind == SEED:
            return synthetic_batch(self.spec, batch_size, self.seed)
        if self.kind == ZOO:
            return self._zoo.make_batch(batch_size, self.seed)
        make = getattr(self._factory, "make_batch", None)  # `factory.make_batch = ...`: its own data
        if make is not None:
            x, y = make(batch_size, self.seed)
            return _as_arrays(x), _as_arrays(y)
        return synthetic_data(model, batch_size, self.seed, self._loss(model), self.choice.source)

    def flops(self, batch_size: int) -> tuple[int | None, str | None]:
        """FLOPs of one training step and where the number came from; None where fitbench does not know."""
        if self.kind == SEED:
            return train_step_flops(self.spec, batch_size), "analytic"
        return None, None


def check_rows(x: Any, y: Any) -> int:
    """Every array of x and y has one row per sample, the same number: else a ModelError line (data whose x
    had 10 rows and y 7 used to be cut to a batch and measured)."""
    def rows(name: str, value: Any) -> list[tuple[str, int]]:
        items = value.items() if isinstance(value, dict) else (
            enumerate(value) if isinstance(value, (list, tuple)) else [("", value)])
        return [(f"{name}{key}", int(np.shape(v)[0]) if np.ndim(v) else 0) for key, v in items]

    counted = rows("x", x) + rows("y", y)
    if any(n == 0 for _, n in counted):
        raise ModelError(f"--data: {next(k for k, n in counted if n == 0)} has no rows")
    if len({n for _, n in counted}) > 1:
        raise ModelError("--data: the arrays need one row per sample, the same number each, got "
                         + ", ".join(f"{k} {n}" for k, n in counted))
    return counted[0][1]


def _npz_part(npz: Any, name: str) -> Any:
    if name in npz.files:
        return npz[name]
    parts = sorted((k for k in npz.files if k.startswith(name) and k[len(name):].isdigit()),
                   key=lambda k: int(k[len(name):]))
    if not parts:
        raise ModelError(f"--data: the file has no {name!r} (or {name}0, {name}1, ...) array")
    return [npz[k] for k in parts]


def synthetic_data(model: Any, batch_size: int, seed: int, loss: Any, source: str) -> tuple[Any, Any]:
    """Seeded data from the model's own input and output specs: float inputs uniform in [0, 1), integer inputs
    within the smallest Embedding's vocabulary, targets uniform in [0, 1) (or class ids for a sparse loss)."""
    import keras

    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if not inputs or not outputs:
        raise ModelError(f"--model {source}: a subclassed model has no input spec: give the factory a "
                         "make_batch(batch_size, seed) attribute or pass --data file.npz")
    rng = np.random.default_rng(seed)
    vocab = min((layer.input_dim for layer in model._flatten_layers() if isinstance(layer, keras.layers.Embedding)),
                default=2)

    def tensor(spec: Any, integer_high: int | None = None) -> np.ndarray:
        shape = (batch_size, *[d if d is not None else 1 for d in spec.shape[1:]])
        if "int" in str(spec.dtype):
            return rng.integers(0, integer_high or vocab, size=shape).astype(str(spec.dtype))
        return rng.random(shape, dtype=np.float32)

    xs = [tensor(s) for s in inputs]
    sparse = "sparse" in str(getattr(loss, "name", loss)).lower()
    ys = [rng.integers(0, s.shape[-1], size=(batch_size,)).astype(np.int32) if sparse else tensor(s)
          for s in outputs]
    return (xs[0] if len(xs) == 1 else xs), (ys[0] if len(ys) == 1 else ys)


def describe(choice: dict[str, Any], backend: str, batch_size: int = 2, keras_major: int = 3) -> dict[str, Any]:
    """Build, compile and train one step of the model in this (fresh) process: what a command needs to know
    before it starts, or a ModelError line. Runs in a child (fitbench.processes.isolation); keras_major 2: in
    tf-keras."""
    from fitbench.stacks import keras_module

    keras = keras_module(keras_major)
    workload = Workload(ModelChoice.from_dict(choice), keras_module=keras if keras_major == 2 else None)
    api = workload.choice.apis[0]
    model = workload.compile(workload.build(api), jit=False)
    x, y = workload.batch(model, batch_size)
    try:
        model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    except Exception as exc:  # shapes or dtypes that do not fit the model: the user's data, one line
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"--model {workload.choice.source}: one training step on its data failed: {line}") from None
    return {"model": workload.choice.name, "apis": list(workload.choice.apis), "backend": keras.backend.backend(),
            "params": int(model.count_params()),
            "inputs": [list(map(lambda d: d if d is None else int(d), t.shape)) for t in (model.inputs or [])],
            "outputs": [list(map(lambda d: d if d is None else int(d), t.shape)) for t in (model.outputs or [])]}

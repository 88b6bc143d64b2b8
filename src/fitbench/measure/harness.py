"""Fit-loop harnesses: a compiled model and its feed, ready for timed `fit` calls (child side: Keras).

`FitHarness` and `SeedHarness` are what `fitbench run`'s cells, the asv suite and the micro-benchmarks all
call; both satisfy `Harness`, the surface a cell's record is read from. Per-step times come from a Keras
callback inside `fit`, so warm-up and compile stay apart from the timed steps.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Iterator, Protocol

from fitbench import backends
from fitbench.measure.cells import PLAIN, TUNED, TUNED_STEPS_PER_EXECUTION, VARIANTS
from fitbench.models.choice import ModelChoice
from fitbench.models.seed import ModelSpec, build_model, compile_model, jit_effective, make_optimizer
from fitbench.models.seed_data import seed_input, seed_target
from fitbench.models.workload import Workload
from fitbench.stacks import keras_module


class Harness(Protocol):
    """What a cell's record reads from a harness, whichever workload it times."""

    model: Any
    jit_requested: bool
    steps_per_execution: int  # training steps per call into the compiled function
    prefetch: bool  # tf.data prefetch (TensorFlow's tuned feed)
    data_on_device: bool  # the batch converted to a device tensor once (JAX's and PyTorch's tuned feed)
    input_pipeline: str  # "tf.data", "python generator" or "numpy arrays"
    note: str | None  # what the harness could not do as asked

    @property
    def jit_effective(self) -> bool: ...

    def warm_up(self, steps: int) -> float: ...


def summarize(times: list[float]) -> dict[str, float]:
    """Robust summary of per-step samples (median and IQR: step times have a long right tail)."""
    ordered = sorted(times)
    q = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else [ordered[0]] * 3
    return {
        "median_s": statistics.median(ordered),
        "mean_s": statistics.fmean(ordered),
        "min_s": ordered[0],
        "max_s": ordered[-1],
        "p25_s": q[0],
        "p75_s": q[2],
        "iqr_s": q[2] - q[0],
        "stdev_s": statistics.stdev(ordered) if len(ordered) > 1 else 0.0,
    }


def _timer_callback(begin_hook: str, end_hook: str, keras: Any = None) -> Any:
    keras = keras or keras_module()  # tf-keras wants its own Callback class (its CallbackList asks for hooks)

    class _Timer(keras.callbacks.Callback):
        # Not async-safe on purpose: Keras then syncs the step's logs before on_*_end, so the end
        # timestamp is taken after the step's work has finished on the device.
        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []
            self._start = 0.0

        def _begin(self, *args: Any, **kwargs: Any) -> None:
            self._start = time.perf_counter()

        def _end(self, *args: Any, **kwargs: Any) -> None:
            self.times.append(time.perf_counter() - self._start)

    setattr(_Timer, begin_hook, _Timer._begin)
    setattr(_Timer, end_hook, _Timer._end)
    return _Timer()


def step_timer(keras: Any = None) -> Any:
    """A Keras callback whose `.times` are the wall times of each training step."""
    return _timer_callback("on_train_batch_begin", "on_train_batch_end", keras)


def epoch_timer(keras: Any = None) -> Any:
    """A Keras callback whose `.times` are the wall times of each epoch (validation included)."""
    return _timer_callback("on_epoch_begin", "on_epoch_end", keras)


def supports_steps_per_execution() -> bool:
    """Keras 3 runs several steps per call on TensorFlow and JAX, not on PyTorch (it raises ValueError)."""
    import keras

    return backends.get(keras.backend.backend()).SUPPORTS_STEPS_PER_EXECUTION


class FitHarness:
    """A compiled model and an endless feed of one seeded batch, ready for timed `fit` calls.

    variant="plain" is `compile` + `fit` as the seed wrote them. variant="tuned" turns on the knobs
    Keras offers for a faster loop on the cell's backend, jit staying the cell's own axis (so "tuned,
    jit on" is the full set):
    - `steps_per_execution` (default TUNED_STEPS_PER_EXECUTION steps per call into the compiled
      function), on TensorFlow and JAX; Keras on PyTorch refuses more than 1: there it stays 1 and
      `note` says so;
    - on TensorFlow, a prefetched tf.data pipeline (`prefetch(AUTOTUNE)`);
    - on JAX and PyTorch, the batch already on the device (`keras.ops.convert_to_tensor` once, so no step
      copies it from host numpy), where the plain variant feeds host numpy arrays as `fit(x, y)` does.
    The JAX and PyTorch feeds are Python generators, not tf.data: those cells never import TensorFlow
    (it need not be installed). `steps_per_execution`, `prefetch` and `data_on_device` override the
    variant's knobs one by one, to measure the gain each brings (`prefetch` is TensorFlow's only,
    `data_on_device` JAX's and PyTorch's only: asking for one elsewhere raises ValueError).
    keras_major=2 runs the seed network in tf-keras (Keras 2) on TensorFlow, with the same knobs. A factory's or a
    file's model keeps the metrics it was compiled with unless keep_metrics is False.
    """

    def __init__(self, api: str, jit: bool, batch_size: int, spec: ModelSpec = ModelSpec(), seed: int = 0,
                 variant: str = PLAIN, steps_per_execution: int | None = None, prefetch: bool | None = None,
                 data_on_device: bool | None = None, workload: Workload | None = None,
                 keras_major: int = 3, keep_metrics: bool = True) -> None:
        keras = self.keras = keras_module(keras_major)
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
        tuned = variant == TUNED
        self.backend = keras.backend.backend()
        on_tf = backends.get(self.backend).FEED == "tf.data"  # tf.data's knobs, or a generator's
        if prefetch and not on_tf:
            raise ValueError(f"prefetch is a tf.data knob: the {self.backend} backend's feed is a Python generator")
        if data_on_device and on_tf:
            raise ValueError("data_on_device is a knob of the jax and torch backends (TensorFlow feeds tf.data)")
        self.api, self.jit_requested, self.batch_size, self.spec = api, bool(jit), batch_size, spec
        self.variant = variant
        self.steps_per_execution = int(steps_per_execution or (TUNED_STEPS_PER_EXECUTION if tuned else 1))
        self.note: str | None = None
        if self.steps_per_execution > 1 and not supports_steps_per_execution():
            self.note = (f"steps_per_execution={self.steps_per_execution} asked, but Keras on PyTorch only "
                         "runs 1: this cell ran 1")
            self.steps_per_execution = 1
        self.prefetch = on_tf and bool(tuned if prefetch is None else prefetch)
        self.data_on_device = not on_tf and bool(tuned if data_on_device is None else data_on_device)
        self.input_pipeline = backends.get(self.backend).FEED
        # any model (fitbench.models): the seed network of `spec` unless a workload is given
        self.workload = workload or Workload(ModelChoice(widths=spec.widths), seed, spec=spec,
                                             keras_module=keras if keras_major == 2 else None)
        self.model = self.workload.compile(self.workload.build(api), jit, steps_per_execution=self.steps_per_execution,
                                           keep_metrics=keep_metrics)
        x, y = self.workload.batch(self.model, batch_size)
        self.batch = (x, y)  # host numpy: the one seeded batch every step trains on
        # One batch repeated: the input pipeline costs nothing, so the step is what gets timed.
        if on_tf:
            import tensorflow as tf

            # several inputs or outputs as tuples: tf.data takes a list for one stacked tensor
            dataset = tf.data.Dataset.from_tensors(
                tuple(tuple(v) if isinstance(v, list) else v for v in (x, y))).repeat()
            if self.prefetch:
                self._dataset = dataset.prefetch(tf.data.AUTOTUNE)
            else:
                # No prefetch thread, not even the one tf.data injects by itself: with one, the step
                # sometimes waits for the producer thread's wake-up, a whole scheduler tick, and a
                # batch-32 step reads one of two speeds, process by process
                # (docs/noise.md). The one batch costs nothing to produce, so a synchronous feed is
                # the honest "the input pipeline costs nothing".
                options = tf.data.Options()
                options.experimental_optimization.inject_prefetch = False
                options.autotune.enabled = False
                self._dataset = dataset.with_options(options)
        else:
            to_device = keras.ops.convert_to_tensor
            self._batch = ((keras.tree.map_structure(to_device, x), keras.tree.map_structure(to_device, y))
                           if self.data_on_device else (x, y))
        self.first_step_s: float | None = None

    def feed(self) -> Any:
        """What `fit` gets: the tf.data pipeline, or a fresh endless generator of the one batch."""
        if self.input_pipeline == "tf.data":
            return self._dataset

        def repeat_batch() -> Iterator[tuple[Any, Any]]:
            while True:
                yield self._batch

        return repeat_batch()

    @property
    def jit_effective(self) -> bool:
        return jit_effective(self.model)

    def fit_executions(self, executions: int) -> list[float]:
        """Run `fit` for `executions` × steps_per_execution steps; return each execution's wall time.

        Keras calls the batch callbacks once per execution (k = steps_per_execution steps), so that is
        the finest time there is with k > 1."""
        timer = step_timer(self.keras)
        self.model.fit(self.feed(), epochs=1, steps_per_epoch=executions * self.steps_per_execution,
                       verbose=0, callbacks=[timer], shuffle=False)
        return timer.times

    def fit_steps(self, steps: int) -> list[float]:
        """Run `fit` for `steps` training steps (rounded up to whole executions); return the time per
        training step of each execution (the execution's wall time ÷ steps_per_execution)."""
        k = self.steps_per_execution
        return [t / k for t in self.fit_executions(-(-steps // k))]

    def warm_up(self, steps: int) -> float:
        """Compile and warm up for `steps` executions; returns the first execution's wall time (trace +
        compile + steps_per_execution steps; one step for the plain variant)."""
        times = self.fit_executions(max(1, steps))
        self.first_step_s = times[0]
        return self.first_step_s


class SeedHarness:
    """The seed's workload: 1 sample, validation on the same sample, timed per epoch."""

    def __init__(self, api: str, jit: bool, spec: ModelSpec = ModelSpec(), seed: int = 0,
                 keras_major: int = 3) -> None:
        self.api, self.jit_requested, self.spec = api, bool(jit), spec
        legacy = keras_module(2) if keras_major == 2 else None
        self.keras = legacy or keras_module()
        self.backend = self.keras.backend.backend()
        self.model = compile_model(build_model(api, spec, seed=seed, keras_module=legacy), jit, spec,
                                   optimizer=make_optimizer(spec, legacy))
        self.x, self.y = seed_input(seed, spec.input_dim), seed_target()
        self.first_epoch_s: float | None = None
        # the Harness surface: the seed's fit(x, y) as written, no speed knobs
        self.steps_per_execution, self.prefetch, self.data_on_device = 1, False, False
        self.input_pipeline, self.note = "numpy arrays", None

    @property
    def jit_effective(self) -> bool:
        return jit_effective(self.model)

    def fit_epochs(self, epochs: int) -> list[float]:
        timer = epoch_timer(self.keras)
        self.model.fit(self.x, self.y, validation_data=(self.x, self.y), epochs=epochs, verbose=0,
                       callbacks=[timer], shuffle=False)
        return timer.times

    def warm_up(self, epochs: int) -> float:
        times = self.fit_epochs(max(1, epochs))
        self.first_epoch_s = times[0]
        return self.first_epoch_s


def window_steps(batch_size: int) -> int:
    """Training steps in one timed window (one `fit` call) of the process-level benchmarks: 2048 samples, at
    least 10 steps (60-300 ms at the seed's sizes on 2 cores). benchmarks/common.py keeps the same formula for
    asv's StepTime, so that every commit is timed with the same windows. Longer windows (8192 samples with
    jit) did not lower the between-process spread (docs/noise.md), which is what the alert's power rests on."""
    return min(256, max(10, 2048 // max(1, batch_size)))

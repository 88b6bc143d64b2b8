"""Base classes for an asv suite on *your* model: what `fitbench asv-init` writes into your repository's
`benchmarks/` subclasses, declaring only the model and the parameters.

Your commits change the model; fitbench is installed once per asv environment (asv.conf.json's
install_command), so these classes can live in the library: unlike fitbench's own suite (benchmarks/common.py),
they need not import from old commits of fitbench. Runs inside asv's benchmark processes (imports Keras).

The cells mirror fitbench's own suite, so `fitbench alert` and `fitbench calibrate` decide on them the same
way: `StepTime.time_step` is seconds per training step, process by process (fixed `repeat` samples per process,
`rounds` processes), `FitLoop` the fit loop's throughput with jit off and on, `Determinism` run-to-run bit
identity. Environment: FITBENCH_PROCESSES (StepTime's processes per commit; the alert sets it),
FITBENCH_THREADS=N|default (default 1) and FITBENCH_CPUS, as in fitbench's own suite (docs/noise.md).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from typing import Any

from fitbench.measure.breakdown import CONFIGURATION_IDS  # light: no framework at import

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPEAT = 5  # samples (windows) per process: fixed, so the alert can cut pooled samples back into processes
DEFAULT_PROCESSES = 2  # StepTime's processes per commit for a plain `asv run`
WARMUP_STEPS = 3  # the first is trace + compile; none is timed
FIT_STEPS = 10  # steps per timed fit() call of FitLoop
WINDOW_S = 0.3  # a StepTime window lasts about this long: far above the timer's resolution and fit's set-up
SEED = 0
# Keras' jit_compile="auto" on a CPU: XLA on TensorFlow and JAX, eager on PyTorch
DEFAULT_JIT = {"tensorflow": True, "jax": True, "torch": False}


def _setting(name: str, default: int, also: tuple[str, ...] = ()) -> int | str:
    text = os.environ.get(name) or str(default)
    if text in also:
        return text
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name} must be a positive integer{' or ' + ', '.join(also) if also else ''}, got {text!r}")
    return int(text)


PROCESSES = _setting("FITBENCH_PROCESSES", DEFAULT_PROCESSES)
_THREADS = _setting("FITBENCH_THREADS", 1, also=("default",))
BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")  # the env_nobuild axis of asv.conf.json's matrix

_CACHE: dict[tuple[Any, ...], Any] = {}  # asv runs each parameter combination in its own process
_WINDOW = {"steps": 1}


def per_step_clock() -> float:
    """StepTime's timer: the wall clock in units of the window's training steps (a sample = s/step)."""
    return time.perf_counter() / _WINDOW["steps"]


def window_steps_for(step_s: float) -> int:
    """Steps in one StepTime window for a model whose step takes about `step_s`: WINDOW_S long, 5 to 256 steps."""
    return max(5, min(256, round(WINDOW_S / max(step_s, 1e-6))))


def _prepare_process() -> None:
    """Before Keras is imported in this benchmark process: CPU only, the thread pools, the pinning."""
    from fitbench import backends
    from fitbench.processes.runtime import apply_threads, parse_cpus, pin_cpus
    from fitbench.stacks import backend_missing

    why = backend_missing(BACKEND)
    if why:
        raise NotImplementedError(why)  # asv: n/a
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    pin_cpus(parse_cpus(os.environ.get("FITBENCH_CPUS", "")))
    apply_threads(BACKEND, None if _THREADS == "default" else _THREADS)
    backends.get(BACKEND).keep_freed_memory()  # the kernel's page faults for freed tensors are not the fit loop
    backends.get(BACKEND).flush_subnormals()  # nor is subnormal arithmetic (docs/noise.md)


class ModelBenchmark:
    """asv attributes shared by the suite; a subclass sets `model` (package.module:function) and `params`."""

    model: str = "seed"  # what `fitbench run --model` takes: a factory, a zoo name, or seed
    loss: str | None = None  # for a factory that returns an uncompiled model (default: MSE)
    optimizer: str | None = None  # likewise (default: Adam)
    data: str | None = None  # an .npz file of x and y (fitbench asv-init --data): its absolute path
    timeout = 600
    number = 1  # one fit() call per sample; warm-up is done in setup
    warmup_time = 0.0
    repeat = REPEAT
    rounds = 1

    def _harness(self, jit: bool, batch_size: int) -> Any:
        from fitbench.measure.harness import FitHarness
        from fitbench.models.choice import ModelChoice
        from fitbench.models.workload import Workload

        def make() -> Any:
            choice = ModelChoice(source=self.model, loss=self.loss, optimizer=self.optimizer, data=self.data)
            harness = FitHarness(choice.apis[0], jit, batch_size, seed=SEED, workload=Workload(choice, SEED))
            harness.warm_up(WARMUP_STEPS)
            return harness

        _prepare_process()
        key = (type(self).__name__, self.model, jit, batch_size)
        if key not in _CACHE:
            _CACHE[key] = make()
        return _CACHE[key]


class StepTime(ModelBenchmark):
    """Seconds per training step of your model's `fit` with Keras' default jit, process by process: the
    cells `fitbench alert` decides on. Each process builds, compiles and warms up, then times REPEAT windows
    of about WINDOW_S each (one `fit` call of a step count fixed in setup)."""

    params: list[list[Any]] = [[256]]
    param_names = ["batch_size"]
    rounds = PROCESSES
    # asv stores the version with each result: the alert cuts stored samples by it (asvdata.LAYOUT)
    version = f"fitbench StepTime; samples-per-process={REPEAT}"
    timer = staticmethod(per_step_clock)

    def setup(self, batch_size: int) -> None:
        self.harness = self._harness(DEFAULT_JIT.get(BACKEND, False), batch_size)
        if not hasattr(self.harness, "window_steps"):
            self.harness.window_steps = window_steps_for(statistics.median(self.harness.fit_steps(5)))
        _WINDOW["steps"] = self.harness.window_steps

    def time_step(self, batch_size: int) -> None:
        """Seconds per training step: one `fit` call of the window's steps ÷ its steps."""
        self.harness.fit_steps(self.harness.window_steps)


class FitLoop(ModelBenchmark):
    """Your model's fit loop with jit off and on: throughput and whether XLA really compiled it."""

    params: list[list[Any]] = [[False, True], [256]]
    param_names = ["jit", "batch_size"]

    def setup(self, jit: bool, batch_size: int) -> None:
        self.harness = self._harness(jit, batch_size)

    def track_samples_per_second(self, jit: bool, batch_size: int) -> float:
        """Training samples per second: batch size / median per-step time inside fit."""
        return batch_size / statistics.median(self.harness.fit_steps(FIT_STEPS))

    track_samples_per_second.unit = "samples/s"

    def track_jit_effective(self, jit: bool, batch_size: int) -> int:
        """1 when XLA (or torch.compile) really compiles the step, read back from Keras."""
        return int(self.harness.jit_effective)

    track_jit_effective.unit = "XLA on (1/0)"


class StepPhases(ModelBenchmark):
    """Seconds per step of each configuration `fitbench breakdown` cuts your model's step into (the forward
    pass, + loss, + backward, the framework's own loop, `fit` without metrics, `fit`, `fit` with the progress
    bar), each in windows of one length (about WINDOW_S of `fit`, a power of two steps), Keras' default jit:
    when StepTime is worse, `fitbench alert` (and bisect, for its culprit) measures these in pairs of the two
    commits and says which phase grew. One process builds the seven once and warms up `fit` (for the length)
    and the configurations it times. A plain `asv run` gives each cell one process (rounds = 1): these are for
    the alert's pairs, not a record of their own."""

    params: list[list[Any]] = [list(CONFIGURATION_IDS), [256]]
    param_names = ["configuration", "batch_size"]
    version = f"fitbench StepPhases; samples-per-process={REPEAT}"
    timer = staticmethod(per_step_clock)

    def setup(self, configuration: str, batch_size: int) -> None:
        from fitbench.measure.breakdown import step_configurations
        from fitbench.models.choice import ModelChoice

        _prepare_process()
        key = ("phases", self.model, batch_size)
        if key not in _CACHE:
            choice = ModelChoice(source=self.model, loss=self.loss, optimizer=self.optimizer, data=self.data)
            _CACHE[key] = (step_configurations(BACKEND, choice.to_dict(), choice.apis[0],
                                               DEFAULT_JIT.get(BACKEND, False), batch_size, SEED), {})
        built, steps = _CACHE[key]
        if not steps:
            # One window length for all seven, about WINDOW_S of `fit`, floored to a power of two: the two commits
            # of a pair then almost always time the same number of steps, so fit's per-call cost weighs alike on
            # both sides (a length set per configuration and process would move with the change itself).
            per_step = statistics.median(built.window("fit")(5))
            steps["all"] = 2 ** int(math.log2(window_steps_for(per_step)))
        self.window = built.window(configuration)  # warmed up now
        self.steps = _WINDOW["steps"] = steps["all"]  # again before every window: the worker's cells share it

    def time_configuration(self, configuration: str, batch_size: int) -> None:
        """Seconds per step of one configuration: one window of its steps ÷ its steps."""
        self.window(self.steps)


class Traces(ModelBenchmark):
    """How many times `fit` traces (compiles) your model's training step, with Keras' default jit: an exact
    count, decided without statistics (any increase is a retrace regression)."""

    params: list[list[Any]] = [[32]]
    param_names = ["batch_size"]
    repeat = 1

    def setup(self, batch_size: int) -> None:
        from fitbench.measure.harness import FitHarness
        from fitbench.models.choice import ModelChoice
        from fitbench.models.workload import Workload

        _prepare_process()
        choice = ModelChoice(source=self.model, loss=self.loss, optimizer=self.optimizer, data=self.data)
        # built here, never fit and never cached: the count starts before the first trace
        self.harness = FitHarness(choice.apis[0], DEFAULT_JIT.get(BACKEND, False), batch_size, seed=SEED,
                                  workload=Workload(choice, SEED))

    def track_step_traces(self, batch_size: int) -> int:
        """Traces of the training step during one `fit` of 3 epochs (fitbench.measure.traces)."""
        from fitbench.measure.traces import count_fit_traces

        return count_fit_traces(self.harness).step_traces

    track_step_traces.unit = "traces"


class Determinism(ModelBenchmark):
    """Run-to-run bit identity of your model: two fresh processes train it from the same seed
    (fitbench determinism --model), 1 when every weight and prediction is bit-identical."""

    timeout = 900
    epochs = 2

    def setup_cache(self) -> dict[str, Any]:
        from fitbench.determinism.check import check_determinism
        from fitbench.determinism.settings import DeterminismSettings
        from fitbench.models.choice import ModelChoice
        from fitbench.stacks import backend_missing

        why = backend_missing(BACKEND)
        if why:
            raise NotImplementedError(why)
        choice = ModelChoice(source=self.model, loss=self.loss, optimizer=self.optimizer, data=self.data)
        return check_determinism(DeterminismSettings(apis=choice.apis, model=choice, epochs=self.epochs, seed=SEED,
                                                     samples=64, batch_size=32, backend=BACKEND)).to_dict()

    def track_run_to_run_identical(self, doc: dict[str, Any]) -> int:
        """1 when two processes trained your model bit-identically."""
        return int(all(p["identical"] for p in doc["pairs"] if p["scope"] == "run_to_run"))

    track_run_to_run_identical.unit = "identical (1/0)"

    def track_run_to_run_max_ulp(self, doc: dict[str, Any]) -> int:
        """Largest float32 ULP distance between the two processes' weights or predictions."""
        return max(p["max_ulp"] for p in doc["pairs"] if p["scope"] == "run_to_run")

    track_run_to_run_max_ulp.unit = "ULP"

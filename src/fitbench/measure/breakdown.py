"""Where a `fit` step's time goes: the step cut into its parts, each part timed as the difference of two
configurations measured side by side in the same process.

Seven configurations of the same model, weights, batch, loss and optimizer (VARIANTS), each a step timed
until its result is on the host:
1. forward: the model's forward pass alone (training=True), compiled as the cell asks;
2. forward+loss; 3. gradients: forward, loss and the backward pass (each backend's `step_prefixes`);
4. custom step: the whole step in the framework's own loop around the Keras model (the floor of `fitbench
   run` for any model: `ctl_step`), i.e. 3 plus the optimizer's update;
5. fit, no metrics: `model.fit` on an endless feed of the batch, the model compiled without its metrics,
   verbose=0; 6. fit: with the model's metrics (what `fitbench run` times); 7. fit, progress bar: verbose=1
   writing to a stream that says it is a terminal (Keras then redraws the bar every step, as for a user at a
   terminal), and the History callback.
A fit step is timed from one `on_train_batch_begin` to the next: everything between two steps (the next
batch from the data adapter, the trainer's Python, every callback) is inside it.

PHASES are the differences: forward (1), loss (2 − 1), backward (3 − 2), optimizer (4 − 3), fit loop: data,
dispatch and other (5 − 4: what fit adds around the same step), metrics (6 − 5), callbacks (7 − 6); they sum
to the fit step as users run it (7) by construction, and none is clipped: a negative phase is noise or a part
that costs nothing on its own (under XLA, forward and backward compiled together can be cheaper than apart,
and the table says so). The configurations run in rounds, in an order drawn per round, each for a block of
steps; a process's value for a configuration is the median of its steps, and several processes (the unit of
replication) give each phase its median and range.
"""

from __future__ import annotations

import contextlib
import io
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

SCHEMA_VERSION = 1
FORWARD, LOSS, GRADIENTS, CUSTOM, FIT_NO_METRICS, FIT, FIT_PROGRESS = (
    "forward", "forward+loss", "gradients", "custom step", "fit, no metrics", "fit", "fit, progress bar")
VARIANTS = (FORWARD, LOSS, GRADIENTS, CUSTOM, FIT_NO_METRICS, FIT, FIT_PROGRESS)
# (phase, configuration, the one before it): phase = configuration − before
PHASES = (
    ("forward", FORWARD, None),
    ("loss", LOSS, FORWARD),
    ("backward (gradients)", GRADIENTS, LOSS),
    ("optimizer update", CUSTOM, GRADIENTS),
    ("fit loop: data, dispatch, other", FIT_NO_METRICS, CUSTOM),
    ("metrics", FIT, FIT_NO_METRICS),
    ("callbacks: progress bar, history", FIT_PROGRESS, FIT),
)
WARMUP_STEPS = 3


@dataclass
class Phase:
    """One part of the step: its time per step over the processes (median, range) and share of the total."""

    name: str
    measured_as: str  # "forward" or "fit − fit, no metrics": which configurations it is the difference of
    ms_per_step: float | None  # median over the processes of the per-process difference
    low_ms: float | None  # the smallest and largest per-process difference
    high_ms: float | None
    share: float | None  # of the total (the fit step with the progress bar)


@dataclass
class BreakdownCell:
    """One stack's breakdown of one model, api, jit and batch size."""

    stack: str  # tensorflow, jax, torch or tf-keras
    model: str
    api: str
    jit: bool  # as asked
    jit_effective: bool | None  # what Keras ran
    batch_size: int
    processes: int  # that came back
    variant_s: dict[str, list[float]] = field(default_factory=dict)  # per configuration, each process's median
    phases: list[Phase] = field(default_factory=list)
    total_ms: float | None = None  # the fit step with the progress bar: the sum of the phases
    fit_ms: float | None = None  # the fit step as `fitbench run` times it (metrics, no progress bar)
    custom_over_fit: float | None = None  # the framework loop's step ÷ the fit step: raw/fit for any model
    step_traces: int | None = None  # traces of the fit step in the first process (fitbench.measure.traces)
    # --flush-subnormals: the processes flushed subnormal floats to zero (optional: the first documents lack it)
    subnormals_flushed: bool = field(default=False, metadata={"optional": True})
    # --keep-freed-memory: glibc kept freed memory in the processes (optional: documents before 2026-12-05 lack it)
    freed_memory_kept: bool = field(default=False, metadata={"optional": True})
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class BreakdownDocument:
    command: str
    schema_version: int
    model: dict[str, Any]
    rounds: int  # of the configurations, per process
    steps: int  # per configuration and round
    threads: int | None
    seed: int
    cells: list[BreakdownCell] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Terminal(io.StringIO):
    """A stream that says it is a terminal and keeps nothing: Keras' progress bar redraws on it every step
    (as at a user's terminal) and the text goes nowhere."""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)


def _interval_timer(keras: Any) -> Any:
    class Intervals(keras.callbacks.Callback):
        # begin to begin: the step, the next batch, the trainer's Python and every callback between two steps
        def __init__(self) -> None:
            super().__init__()
            self.starts: list[float] = []

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            self.starts.append(time.perf_counter())

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            # nothing, but not async-safe: Keras then waits for each step's logs (JAX and PyTorch dispatch ahead
            # otherwise, and begin to begin would time the dispatch, not the step)
            pass

    return Intervals()


def _fit_block(harness: Any, steps: int, verbose: int) -> list[float]:
    timer = _interval_timer(harness.keras)
    stream = _Terminal() if verbose else contextlib.nullcontext()
    with contextlib.redirect_stdout(stream) if verbose else contextlib.nullcontext():
        harness.model.fit(harness.feed(), epochs=1, steps_per_epoch=steps + 1, verbose=verbose,
                          callbacks=[timer], shuffle=False)
    return [b - a for a, b in zip(timer.starts, timer.starts[1:])]


def _loop_block(step: Callable[[], float], steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


# the configurations as identifiers (asv's parameters; a comma or space inside one would split its name):
# bench_breakdown.StepPhases writes the same tuple out (old commits must import it), a test checks they agree
CONFIGURATION_IDS = {"forward": FORWARD, "forward_loss": LOSS, "gradients": GRADIENTS, "custom_step": CUSTOM,
                     "fit_no_metrics": FIT_NO_METRICS, "fit": FIT, "fit_progress": FIT_PROGRESS}


@dataclass
class StepConfigurations:
    """The seven configurations of one model, built; each is warmed up (traced, compiled, settled) by `warm`
    before it is timed: `blocks[name](n)` runs n steps of one and returns each step's seconds."""

    blocks: dict[str, Callable[[int], list[float]]]
    jit_effective: bool
    counting: Any  # fitbench.measure.traces.TraceCounting of the fit model
    warmed: set[str] = field(default_factory=set)

    def warm(self, name: str) -> None:
        """WARMUP_STEPS untimed steps of one configuration, once: the first traces and compiles it."""
        if name not in self.warmed:
            self.blocks[name](WARMUP_STEPS)
            self.warmed.add(name)

    def window(self, configuration_id: str) -> Callable[[int], Any]:
        """A configuration by its identifier (CONFIGURATION_IDS), warmed up now, as a window of exactly n steps
        to be timed whole (asv's StepPhases, as StepTime times a `fit` call: each of asv's own processes warms
        up only the configuration it times); one this commit lacks is n/a to asv."""
        if configuration_id not in CONFIGURATION_IDS:
            raise NotImplementedError(f"this commit of fitbench has no configuration {configuration_id!r}")
        name = CONFIGURATION_IDS[configuration_id]
        self.warm(name)
        # a fit block runs one step more than it times (its intervals are begin to begin)
        fewer = 1 if name in (FIT_NO_METRICS, FIT, FIT_PROGRESS) else 0
        return lambda n: self.blocks[name](max(1, n - fewer))


def step_configurations(stack: str, model: dict[str, Any] | None, api: str, jit: bool, batch_size: int, seed: int,
                        flush_subnormals: bool = False, keep_freed_memory: bool = False) -> StepConfigurations:
    """The configurations built from one seeded model choice (a ModelChoice's dict; None: the seed network),
    none warmed up yet (StepConfigurations.warm). `flush_subnormals` and `keep_freed_memory`: as the asv suite
    does (PyTorch on a CPU computes subnormal floats at full cost, and maps its freed tensors afresh)."""
    from fitbench import backends
    from fitbench.measure.ctl import CtlHarness
    from fitbench.measure.harness import FitHarness
    from fitbench.measure.traces import TraceCounting
    from fitbench.models.choice import ModelChoice
    from fitbench.models.workload import Workload
    from fitbench.stacks import keras_module

    keras_major = 2 if stack == "tf-keras" else 3
    choice = ModelChoice.from_dict(model) if model is not None else ModelChoice()
    if keep_freed_memory:
        backends.get(stack).keep_freed_memory()
    if flush_subnormals:
        backends.get(stack).flush_subnormals()

    def workload() -> Workload:
        return Workload(choice, seed, keras_module=keras_module(2) if keras_major == 2 else None)

    fit = FitHarness(api, jit, batch_size, seed=seed, workload=workload(), keras_major=keras_major)
    jit_effective = fit.jit_effective
    bare = FitHarness(api, jit, batch_size, seed=seed, workload=workload(), keras_major=keras_major,
                      keep_metrics=False)
    counting = TraceCounting(fit)
    ctl = CtlHarness(stack, workload(), api, jit_effective, batch_size)
    parts = backends.get(stack).step_prefixes(ctl.model, ctl.loss_fn, *workload().batch(ctl.model, batch_size),
                                               jit_effective)
    blocks: dict[str, Callable[[int], list[float]]] = {
        FORWARD: lambda n: _loop_block(parts["forward"], n),
        LOSS: lambda n: _loop_block(parts["forward+loss"], n),
        GRADIENTS: lambda n: _loop_block(parts["gradients"], n),
        CUSTOM: lambda n: ctl.run_steps(n),
        FIT_NO_METRICS: lambda n: _fit_block(bare, n, 0),
        FIT: lambda n: _fit_block(fit, n, 0),
        FIT_PROGRESS: lambda n: _fit_block(fit, n, 1),
    }
    return StepConfigurations(blocks=blocks, jit_effective=jit_effective, counting=counting)


def measure_process(stack: str, model: dict[str, Any], api: str, jit: bool, batch_size: int, seed: int,
                    rounds: int, steps: int, order_seed: int, flush_subnormals: bool = False,
                    keep_freed_memory: bool = False) -> dict[str, Any]:
    """Child side: the seven configurations (step_configurations), then `rounds` rounds of `steps` steps each
    in a drawn order; returns each configuration's median seconds per step."""
    built = step_configurations(stack, model, api, jit, batch_size, seed, flush_subnormals, keep_freed_memory)
    for name in VARIANTS:  # trace, compile and settle each one before anything is timed
        built.warm(name)
    order = random.Random(order_seed)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        names = list(VARIANTS)
        order.shuffle(names)
        for name in names:
            times[name] += built.blocks[name](steps)
    traces = built.counting.stop(2 + 2 * rounds, steps)  # warm-ups and rounds of the fit model
    return {"variant_s": {name: statistics.median(t) for name, t in times.items()},
            "jit_effective": built.jit_effective, "step_traces": traces.step_traces}


def phases_of(variant_s: dict[str, list[float]]) -> tuple[list[Phase], float | None]:
    """The phases from each configuration's per-process medians (processes in the same order in every list):
    per process the difference, then the median and range over processes. Pure."""
    counts = {len(v) for v in variant_s.values()}
    if not variant_s or counts == {0} or len(counts) != 1:
        return [], None
    total = statistics.median(variant_s[FIT_PROGRESS]) * 1000
    phases = []
    for name, current, before in PHASES:
        diffs = [(c - (b if before else 0.0)) * 1000
                 for c, b in zip(variant_s[current], variant_s[before] if before else variant_s[current])]
        mid = statistics.median(diffs)
        phases.append(Phase(name=name, measured_as=current if before is None else f"{current} − {before}",
                            ms_per_step=mid, low_ms=min(diffs), high_ms=max(diffs),
                            share=mid / total if total else None))
    return phases, total


def summarize(cell: BreakdownCell) -> None:
    """Phases, totals and the custom-step/fit ratio of a cell whose `variant_s` is filled; and the notes a reader
    of the table needs."""
    cell.phases, cell.total_ms = phases_of(cell.variant_s)
    if not cell.phases:
        return
    cell.fit_ms = statistics.median(cell.variant_s[FIT]) * 1000
    cell.custom_over_fit = statistics.median(cell.variant_s[CUSTOM]) / statistics.median(cell.variant_s[FIT])
    if cell.jit_effective:
        cell.notes.append("compiled: each cut of the step (forward; forward+loss; gradients) is compiled on its own, "
                          "so the compiler cannot fuse across the cut as it does in the whole step; a phase by "
                          "difference can then come out small or negative")
    negative = [p.name for p in cell.phases if p.ms_per_step is not None and p.ms_per_step < 0]
    if negative:
        cell.notes.append(f"below zero (kept, not clipped): {', '.join(negative)}")
    if cell.stack == "torch" and not cell.subnormals_flushed:
        cell.notes.append("PyTorch computes subnormal floats at full cost on a CPU (XLA flushes them): a model that "
                          "trains into them (the seed network on one batch does) pays in every phase that meets "
                          "them, as your own fit would; --flush-subnormals leaves them out (docs/noise.md)")
    if cell.stack == "torch" and not cell.freed_memory_kept:
        cell.notes.append("glibc maps PyTorch's large CPU tensors afresh each step and hands them back when freed: the "
                          "kernel's page faults are in every phase, as in your own fit; --keep-freed-memory leaves "
                          "them out, as the asv suite does (docs/noise.md)")
    if cell.processes < 3:
        cell.notes.append(f"{cell.processes} process(es): the ranges are anecdotes, not intervals")


@dataclass(frozen=True)
class BreakdownSettings:
    """What `fitbench breakdown` measures (checked by the command before any process starts)."""

    stacks: tuple[str, ...]
    model: dict[str, Any]  # a ModelChoice's dict
    api: str
    jit: bool | None  # None: Keras' default on each backend (DEFAULT_JIT)
    batch_size: int
    processes: int
    rounds: int
    steps: int
    threads: int | None
    seed: int
    timeout_s: float
    flush_subnormals: bool = False
    keep_freed_memory: bool = False


def run_breakdown(settings: BreakdownSettings, progress: Callable[[str], None] = lambda line: None
                  ) -> BreakdownDocument:
    """Every stack's processes, interleaved (process 1 of each stack, then process 2, ...), each in a fresh
    interpreter of its stack; the cells summarized."""
    from fitbench import backends
    from fitbench.processes.isolation import IsolatedError, process_env, run_isolated
    from fitbench.stacks import parse_stack

    doc = BreakdownDocument(command="breakdown", schema_version=SCHEMA_VERSION, model=settings.model,
                            rounds=settings.rounds, steps=settings.steps, threads=settings.threads, seed=settings.seed)
    cells: dict[str, BreakdownCell] = {}
    for stack in settings.stacks:
        jit = backends.get(stack).DEFAULT_JIT if settings.jit is None else settings.jit
        cells[stack] = BreakdownCell(stack=stack, model=settings.model["source"], api=settings.api, jit=jit,
                                     jit_effective=None, batch_size=settings.batch_size, processes=0,
                                     variant_s={name: [] for name in VARIANTS},
                                     subnormals_flushed=settings.flush_subnormals,
                                     freed_memory_kept=settings.keep_freed_memory)
    started = time.monotonic()
    total = settings.processes * len(settings.stacks)
    done = 0
    for index in range(settings.processes):
        for stack, cell in cells.items():
            kwargs = {"stack": stack, "model": settings.model, "api": settings.api, "jit": cell.jit,
                      "batch_size": settings.batch_size, "seed": settings.seed, "rounds": settings.rounds,
                      "steps": settings.steps, "order_seed": settings.seed * 1000 + index,
                      "flush_subnormals": settings.flush_subnormals,
                      "keep_freed_memory": settings.keep_freed_memory}
            try:
                result = run_isolated(measure_process, kwargs, env=process_env(parse_stack(stack),
                                                                               threads=settings.threads),
                                      timeout_s=settings.timeout_s)
            except IsolatedError as exc:
                cell.errors.append(f"process {index + 1}: {exc}")
                result = None
            done += 1
            if result:
                cell.processes += 1
                for name in VARIANTS:
                    cell.variant_s[name].append(result["variant_s"][name])
                cell.jit_effective = result["jit_effective"]
                if cell.step_traces is None:
                    cell.step_traces = result["step_traces"]
            what = (f"fit {result['variant_s'][FIT_PROGRESS] * 1000:.2f} ms/step" if result else "failed")
            progress(f"{time.monotonic() - started:6.1f} s [{done}/{total}] {stack} process {index + 1}: {what}")
    for cell in cells.values():
        summarize(cell)
        doc.cells.append(cell)
    return doc

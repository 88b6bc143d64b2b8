"""`fitbench run`: time model.fit cell by cell, each cell in a fresh process."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fitbench import DEVICES
from fitbench.commands import common
from fitbench.errors import UsageError
from fitbench.measure.profiles import PROFILES, get_profile
from fitbench.models.seed import ModelSpec, parse_widths
from fitbench.processes import options
from fitbench.stacks import one_per_keras, parse_stack, stack_name

NAME = "run"
SUMMARY = ("time model.fit cell by cell (TensorFlow, JAX, PyTorch; XLA on/off; CPU/GPU), beside the framework's "
           "own raw training step and the device's peak")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    run = sub.add_parser("run", help="time the fit loop, one process per cell")
    common.model_flags(run)
    run.add_argument("--profile", default="quick", help=f"{' | '.join(PROFILES)} (default quick)")
    run.add_argument("--jit", default="both", choices=("on", "off", "both"),
                     help="XLA (TensorFlow, JAX) or torch.compile for the step: on, off or both (default both)")
    run.add_argument("--device", default="cpu", choices=(*DEVICES, "both"),
                     help="cpu (default), gpu, or both; a gpu cell without a GPU is skipped with the reason")
    run.add_argument("--batch-sizes", help="comma-separated (default: the profile's)")
    run.add_argument("--variant", default="both", choices=("plain", "tuned", "both"),
                     help="plain fit, tuned fit (steps_per_execution; prefetch on tensorflow, data on the device on "
                          "jax/torch), or both (default)")
    run.add_argument("--determinism", default="off", choices=("off", "on", "both"),
                     help="the backend's determinism switch in each cell's process: off (default), on, or both "
                          "(a cost table follows; `fitbench cost` for an interval)")
    common.switch_flags(run)
    run.add_argument("--devices", type=common.device_counts, default=[1], metavar="N,...",
                     help="data parallelism: each cell also on N devices (keras.distribution.DataParallel, the "
                          "batch split; JAX; simulated devices on a CPU), e.g. 1,2,4 (default 1)")
    run.add_argument("--no-seed-workload", action="store_true", help="skip the seed's 1-sample epoch cells")
    run.add_argument("--no-floor", action="store_true", help="skip the raw-step floor and the peak probe")
    run.add_argument("--wide", action="store_true",
                     help="every column (GFLOP/s, %% of the peak probe, raw ms, first step, RSS); default: the "
                          "compact table that fits 100 columns")
    run.add_argument("--plot", metavar="PATH", type=common.output_path("--plot"),
                     help="write a PNG of samples/s against batch size")
    run.add_argument("--cell-timeout", type=common.positive_int("--cell-timeout", common.TIMEOUT_MAX_S),
                     default=1800, metavar="S",
                     help="seconds a cell's process may take (default 1800)")
    run.add_argument("--threads", default="default", metavar="N|default",
                     help="the frameworks' CPU thread pools per cell (default: their own; 1 gives the steadiest "
                          "numbers between processes, docs/noise.md)")
    run.add_argument("--cpus", default=None, metavar="LIST",
                     help="pin every cell's process to these CPUs, e.g. 1 or 0-1")
    run.add_argument("--fresh-processes", action="store_true",
                     help="start every cell in a fresh interpreter that imports its framework itself (default on "
                          "Linux: forked from a warm process per backend that imported it once, seconds a cell)")
    return run


def main(args: argparse.Namespace, console: Console) -> int:
    from fitbench.determinism.switch import resolve_switches
    from fitbench.measure import engine
    from fitbench.measure.cells import plan_cells
    from fitbench.models.check import check_in_child
    from fitbench.report.io import check_output_path
    from fitbench.report.tables import (
        determinism_cost_run_table,
        determinism_costs,
        device_scaling,
        device_scaling_table,
        jit_ratio_table,
        jit_ratios,
        keras_ratio_table,
        keras_ratios,
        not_ok_lines,
        peak_lines,
        run_table,
        tuned_gain_table,
    )

    profile = get_profile(args.profile)
    backends, missing = options.backends(args.backend)
    devices = ["cpu", "gpu"] if args.device == "both" else [args.device]
    batch_sizes = (options.batch_sizes(args.batch_sizes) if args.batch_sizes is not None
                   else list(profile.batch_sizes))
    out = check_output_path(args.json) if args.json else None
    model = common.model_choice(args)
    jits = {"on": [True], "off": [False], "both": [False, True]}[args.jit]
    if args.switch and args.determinism == "off":
        raise UsageError("--switch names the switch --determinism on or both turns on; with --determinism off "
                         "no switch is on")
    switches = resolve_switches(args.switch, backends)
    cells = plan_cells(options.apis(args.api, model.apis), jits, devices, batch_sizes, backends,
                       include_seed=not args.no_seed_workload,
                       variants=["plain", "tuned"] if args.variant == "both" else [args.variant],
                       model=model.name, model_apis=model.apis,
                       determinism={"off": (False,), "on": (True,), "both": (False, True)}[args.determinism],
                       switches=switches, device_counts=tuple(args.devices))
    # a factory or file: one step, or exit 2, before any cell; once per Keras (on tf-keras its `keras` is Keras 2)
    for stack in one_per_keras([parse_stack(b) for b in backends if b not in missing]):
        check_in_child(model, stack.name, args.cell_timeout)
    settings = engine.RunSettings(cells=cells, profile=profile, spec=ModelSpec(widths=parse_widths(args.widths)),
                                  model=model,
                                  seed=args.seed, floor=not args.no_floor, threads=options.threads(args.threads),
                                  cpus=options.cpus(args.cpus), missing=missing, cell_timeout_s=args.cell_timeout,
                                  fresh_processes=args.fresh_processes)
    plot = check_output_path(args.plot) if args.plot else None
    # the keeper writes the document after every cell (settings.json_path is for library callers); without
    # --json the cells are kept anyway, in the cache: a long run stopped or crashed loses nothing
    keeper = engine.JsonKeeper(out or default_run_path())
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        if console.is_terminal:
            with Progress(*columns, console=console, transient=True) as progress:
                doc = engine.run(settings, _Bar(progress), keeper, note=_note)
        else:  # a CI log or `| tee`: a bar would show nothing until the end; one line per cell on stderr
            doc = engine.run(settings, _Lines(), keeper, note=_note)
    except engine.RunInterrupted as stop:
        done = len(stop.document.records)
        _say_where(keeper)
        console.print(f"interrupted: {done} of {len(cells)} cells done"
                      + (f", kept in {keeper.path}" if done else ", nothing written"))
        return common.EXIT_INTERRUPTED
    records = [r.to_dict() for r in doc.records]
    console.print(run_table(records, wide=args.wide))
    if not args.wide:
        for line in not_ok_lines([r for r in records if r.get("status") == "skipped"]):
            console.print(line, highlight=False, markup=False)
    if jit_ratios(records):  # only with jit both ways: an empty table is headers without an answer
        console.print(jit_ratio_table(records))
    if any(r["variant"] == "tuned" for r in records):
        console.print(tuned_gain_table(records))
    if determinism_costs(records):
        console.print(determinism_cost_run_table(records))
    if device_scaling(records):
        console.print(device_scaling_table(records))
    if keras_ratios(records):
        console.print(keras_ratio_table(records))
    for line in peak_lines([p.to_dict() for p in doc.peaks]):
        console.print(line)
    _say_where(keeper)
    if not out:
        console.print(f"kept in {keeper.path}", highlight=False)
    failed = [f"error in {stack_name(r.to_dict())} {r.api} jit={r.jit} {r.variant} {r.device}"
              f"{f' ×{r.device_count}' if r.device_count > 1 else ''} batch {r.batch_size}: {r.error}"
              for r in engine.errors(doc)]
    if plot:
        from fitbench.report.plot import plot_throughput

        try:
            plot_throughput(records, plot)
            console.print(f"plot: {args.plot}")
        except OSError as exc:  # the cells are kept; the picture is not
            failed.append(f"cannot write the plot {args.plot}: {exc.strerror or exc}")
    for line in failed:
        sys.stderr.write(f"fitbench: {line}\n")
    return common.EXIT_FAILED if failed else common.EXIT_OK


def default_run_path() -> str:
    """Where a run without --json keeps its cells: $XDG_CACHE_HOME/fitbench/runs (~/.cache/...), one file per
    run, named by its start."""
    from fitbench.report.io import cache_dir

    # a folder that cannot be written: the keeper falls back to the temporary folder and says so
    return os.path.join(cache_dir("runs"), time.strftime("run-%Y%m%dT%H%M%S") + f"-{os.getpid()}.json")


def _say_where(keeper: Any) -> None:
    if keeper.failure:
        sys.stderr.write(f"fitbench: {keeper.failure}; the cells are kept in {keeper.path} instead\n")


def _note(line: str) -> None:
    sys.stderr.write(f"fitbench: note: {line}\n")
    sys.stderr.flush()


class _Lines:
    """The engine's progress as lines on stderr, for output that is not a terminal."""

    def __init__(self) -> None:
        self.total, self.done, self.started, self.current = 0, 0, time.monotonic(), ""

    def _say(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        sys.stderr.write(f"fitbench: {elapsed // 60:.0f}:{elapsed % 60:04.1f} {text}\n")
        sys.stderr.flush()

    def looking_for_gpus(self, looking: bool) -> None:
        if looking:
            self._say("looking for GPUs")

    def start(self, total: int) -> None:
        self.total = total
        self._say(f"{total} to measure (cells and probes), each in a process of its own")

    def step(self, description: str) -> None:
        self.current = description
        self._say(f"[{self.done + 1}/{self.total}] {description}")

    def advance(self, outcome: str = "") -> None:
        self.done += 1
        if outcome:
            self._say(f"[{self.done}/{self.total}] {self.current}: {outcome}")


class _Bar:
    """The engine's progress on a rich progress bar."""

    def __init__(self, progress: Progress) -> None:
        self.progress, self.task, self.looking, self.current = progress, None, None, ""

    def looking_for_gpus(self, looking: bool) -> None:
        if looking:
            self.looking = self.progress.add_task("looking for GPUs", total=None)
        else:
            self.progress.remove_task(self.looking)

    def start(self, total: int) -> None:
        self.task = self.progress.add_task("cells", total=total)

    def step(self, description: str) -> None:
        self.current = description
        self.progress.update(self.task, description=description)

    def advance(self, outcome: str = "") -> None:
        if outcome:  # above the bar, as each answer comes: the table at the end has them all
            self.progress.console.print(f"{self.current}: {outcome}", highlight=False, markup=False)
        self.progress.advance(self.task)

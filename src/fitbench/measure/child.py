"""Child side of `fitbench run`: one cell measured in this (fresh) process, returned as a JSON-able record.

The parent (fitbench.measure.engine) calls these through fitbench.processes.isolation, in a new interpreter started
with the cell's environment (backend, hidden GPUs, thread pools): Keras picks its backend at import.
"""

from __future__ import annotations

import time
from typing import Any

from fitbench.measure import metrics
from fitbench.measure.cells import FIT, TUNED, Cell
from fitbench.measure.harness import FitHarness, Harness, SeedHarness, summarize, window_steps
from fitbench.measure.profiles import Profile
from fitbench.measure.record import RunRecord
from fitbench.measure.traces import TraceCounting
from fitbench.models.choice import SEED, ModelChoice
from fitbench.models.seed import ModelSpec, param_count, trainable_param_count
from fitbench.models.workload import Workload
from fitbench.stacks import keras_module


def measure_cell(cell: dict[str, Any], profile: dict[str, Any], spec: dict[str, Any] | None = None,
                 seed: int = 0, peak: dict[str, Any] | None = None, raw: bool = True, threads: int | None = None,
                 cpus: list[int] | None = None, model: dict[str, Any] | None = None) -> dict[str, Any]:
    """Time one cell in this process and return its `RunRecord` as a dict. Runs in a fresh child.

    `peak` is the device's peak-probe record (measured once per run); `raw=False` leaves out the raw-step
    floor; `threads` fixes the framework's thread pools (None: its defaults) and `cpus` pins the process,
    both before the framework is imported. `model` is a ModelChoice as a dict (None: the seed network of
    `spec`)."""
    from fitbench.processes import runtime

    affinity = runtime.pin_cpus(set(cpus) if cpus else None)
    runtime.apply_threads(cell.get("backend", "tensorflow"), threads)
    c = Cell(**cell)
    switched: dict[str, Any] = {}
    if c.determinism:  # before the model is built: process-wide, and one-way on TensorFlow
        from fitbench.determinism.switch import turn_on

        switched = turn_on(c.stack.name, c.determinism)
    if c.device_count > 1:  # before the model is built: its variables are laid out on the mesh
        from fitbench.measure.distributed import use_data_parallel

        use_data_parallel(c.device_count, c.device)
        raw = False  # the floor is one device's step: beside N devices it would measure something else
    p = Profile(**{**profile, "batch_sizes": tuple(profile["batch_sizes"])})
    model_spec = ModelSpec.from_dict(spec) if spec else ModelSpec()
    choice = ModelChoice.from_dict(model) if model else ModelChoice(widths=model_spec.widths)
    workload = Workload(choice, seed, spec=model_spec,
                        keras_module=keras_module(2) if c.keras_major == 2 else None)
    facts = runtime.process_facts(c.device, c.backend, c.keras_major)
    process = {"versions": facts["versions"], "device_name": facts["device_name"], "threads_setting": threads,
               "affinity": affinity, "determinism_in_force": switched.get("determinism_in_force", False),
               "per_device_batch": c.batch_size // c.device_count}
    if c.device == "gpu" and not facts["device_name"]:
        return RunRecord.not_measured(c, "skipped", f"no GPU visible to {c.backend} on this machine",
                                      **process).to_dict()
    harness: Harness
    if c.kind == FIT:
        harness = fit = FitHarness(c.api, c.jit, c.batch_size, model_spec, seed, variant=c.variant,
                                   steps_per_execution=p.steps_per_execution if c.variant == TUNED else 1,
                                   workload=workload, keras_major=c.keras_major)
        counting = TraceCounting(fit)
        load = runtime.load_1min()
        first_s = fit.warm_up(p.warmup_steps)
        # p.steps samples per repeat: executions of k steps, each sample = execution time / k
        times = [t for _ in range(p.repeats) for t in fit.fit_steps(p.steps * fit.steps_per_execution)]
        warmup = p.warmup_steps * fit.steps_per_execution
        traces = counting.stop(1 + p.repeats, p.steps * fit.steps_per_execution)  # fit calls, not epochs
    else:
        harness = seed_run = SeedHarness(c.api, c.jit, model_spec, seed, keras_major=c.keras_major)
        counting = TraceCounting(seed_run)
        load = runtime.load_1min()
        first_s = seed_run.warm_up(p.seed_warmup_epochs)
        times = seed_run.fit_epochs(p.seed_epochs)
        warmup = p.seed_warmup_epochs
        traces = counting.stop(p.seed_warmup_epochs + p.seed_epochs, 1)
    where = runtime.variable_device(harness.model)
    if not runtime.on_device(where, c.device):  # a "gpu" result must have run on the GPU
        return RunRecord.not_measured(c, "error", f"the model's variables live on {where!r}, not on the {c.device}",
                                      variable_device=where, **process).to_dict()
    stats = summarize(times)
    flops, flops_source = workload.flops(c.batch_size)
    floor: dict[str, Any] = {}
    if raw and c.kind == FIT:
        floor = (measure_raw(c, p, model_spec, seed, harness.jit_effective) if workload.kind == SEED
                 else measure_ctl(c, p, workload, harness.jit_effective))
        if flops is None and floor.get("flops"):  # the compiler's count of the same step
            flops, flops_source = floor["flops"], floor["flops_source"]
    gflops = metrics.gflops_per_s(flops, stats["median_s"]) if flops else None
    if floor and not runtime.on_device(floor["raw_device"], c.device):
        return RunRecord.not_measured(c, "error", f"the raw step's variables live on {floor['raw_device']!r}, "
                                                  f"not on the {c.device}", variable_device=where, **process).to_dict()
    peak_gflops = peak.get("gflops_per_s") if peak else None
    k = harness.steps_per_execution
    return RunRecord.for_cell(
        c, **process,
        jit_effective=harness.jit_effective,
        variable_device=where,
        raw_device=floor.get("raw_device"),
        model=choice.name,
        params=param_count(model_spec) if workload.kind == SEED else trainable_param_count(harness.model),
        widths=list(model_spec.widths) if workload.kind == SEED else None,
        steps_per_execution=k,
        prefetch=harness.prefetch,
        data_on_device=harness.data_on_device,
        input_pipeline=harness.input_pipeline,
        variant_note=harness.note,
        warmup_steps=warmup,
        steps_timed=len(times) * k,
        step_times_s=times,
        step_time_median_s=stats["median_s"],
        step_time_iqr_s=stats["iqr_s"],
        step_time_min_s=stats["min_s"],
        step_time_mean_s=stats["mean_s"],
        samples_per_s=metrics.samples_per_s(c.batch_size, stats["median_s"]),
        first_step_s=first_s,
        first_step_load_1min=load,
        step_traces=traces.step_traces,
        step_traces_what=traces.what,
        flops_per_step=flops,
        flops_source=flops_source,
        gflops_per_s=gflops,
        raw_step_time_s=floor.get("raw_step_time_s"),
        raw_first_step_s=floor.get("raw_first_step_s"),
        raw_jit=floor.get("raw_jit"),
        raw_idiom=floor.get("raw_idiom"),
        efficiency=metrics.efficiency(floor["raw_step_time_s"], stats["median_s"]) if floor else None,
        peak_gflops_per_s=peak_gflops,
        pct_of_peak=metrics.pct_of_peak(gflops, peak_gflops) if peak_gflops and gflops else None,
        threads=runtime.thread_settings(c.backend),
        peak_rss_bytes=runtime.peak_rss_bytes(),
    ).to_dict()


def measure_ctl(c: Cell, p: Profile, workload: Workload, jit: bool) -> dict[str, Any]:
    """The floor of any other model: its custom training loop in the backend's idiom (fitbench.measure.ctl),
    jit as Keras really ran the fit cell, timed like the raw step."""
    from fitbench.measure.ctl import CtlHarness

    ctl = CtlHarness(c.stack.name, workload, c.api, jit, c.batch_size)
    first_s = ctl.warm_up(p.warmup_steps)
    times = ctl.run_steps(p.repeats * p.steps)
    return {"raw_step_time_s": summarize(times)["median_s"], "raw_first_step_s": first_s, "raw_jit": bool(jit),
            "raw_idiom": ctl.idiom, "raw_device": ctl.variable_device(), "flops": ctl.flops,
            "flops_source": ctl.flops_source}


def measure_raw(c: Cell, p: Profile, spec: ModelSpec, seed: int, jit: bool) -> dict[str, Any]:
    """The raw step of the cell's network and batch, jit as Keras really ran it, timed like the fit cell
    (the profile's warm-up steps excluded, then repeats × steps samples)."""
    from fitbench.measure.raw import RawHarness

    raw = RawHarness(c.backend, jit, c.batch_size, spec, seed, device=c.device)
    first_s = raw.warm_up(p.warmup_steps)
    times = raw.run_steps(p.repeats * p.steps)
    return {"raw_step_time_s": summarize(times)["median_s"], "raw_first_step_s": first_s, "raw_jit": bool(jit),
            "raw_idiom": raw.idiom, "raw_device": raw.variable_device()}


def measure_windows(backend: str, api: str, jit: bool, batch_sizes: list[int], windows: int,
                    threads: int | None = None, cpus: list[int] | None = None, seed: int = 0,
                    warmup_steps: int = 3, steps_per_window: dict[str, int] | None = None) -> dict[str, Any]:
    """One process's samples for the noise study: for each batch size, `windows` timed `fit` calls of
    `window_steps(batch)` steps (or `steps_per_window[str(batch)]`) after warm-up (each window's wall and
    process CPU time ÷ steps = seconds per step).

    Runs in a fresh child: the thread setting and CPU affinity must be in force before the framework is
    imported."""
    from fitbench.processes import runtime

    pinned = runtime.pin_cpus(set(cpus) if cpus else None)
    applied = runtime.apply_threads(backend, threads)
    out: dict[str, Any] = {"backend": backend, "api": api, "jit": jit, **applied, "affinity": pinned, "cells": []}
    for batch_size in batch_sizes:
        harness = FitHarness(api, jit, batch_size, ModelSpec(), seed=seed)
        harness.warm_up(warmup_steps)
        steps = (steps_per_window or {}).get(str(batch_size)) or window_steps(batch_size)
        per_step, cpu_per_step = [], []
        for _ in range(windows):
            start, cpu_start = time.perf_counter(), time.process_time()
            harness.fit_steps(steps)
            per_step.append((time.perf_counter() - start) / steps)
            cpu_per_step.append((time.process_time() - cpu_start) / steps)
        out["cells"].append({"batch_size": batch_size, "steps_per_window": steps, "window_step_s": per_step,
                             "window_cpu_step_s": cpu_per_step, "jit_effective": harness.jit_effective})
    out["threads_in_force"] = runtime.thread_settings(backend)
    return out

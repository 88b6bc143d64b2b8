"""`fitbench coverage`: what the determinism switch does to each layer of a model's training step.

For each top-level layer: its training step alone (forward on seeded inputs of the shapes it gets inside the
model, then the gradients of a fixed random projection of its output with respect to its weights and its
floating-point inputs),
with the backend's switch on, in two fresh processes. A layer's answer is one of

- identical: it ran, and both processes computed the same bits;
- raises: the framework refused it under the switch (its message, and whether forward or gradient);
- differs: it ran, but the two processes computed different bits (the switch does not cover it);
- fell back: it ran somewhere else than asked (a GPU cell whose output lives on the CPU);
- not reached: a layer before it raised inside the model, so it never got an input.

Beside the layers, the model's whole compiled `fit` step under the switch: whether it runs and whether Keras still
compiles it (`jit_effective`: TensorFlow's op determinism turns XLA off, keras-team/keras#20315); and each
layer's step compiled alone (XLA on TensorFlow and JAX; PyTorch's torch.compile is per model, not asked per layer).

Parent side (`coverage`) imports no framework; `layer_steps` runs in the child.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from typing import Any, Callable

from fitbench import __version__
from fitbench.report.document import Document
from fitbench.report.io import utc_stamp

SCHEMA_VERSION = 1
IDENTICAL, RAISES, DIFFERS, FELL_BACK, NOT_REACHED = "identical", "raises", "differs", "fell back", "not reached"
STATUSES = (IDENTICAL, RAISES, DIFFERS, FELL_BACK, NOT_REACHED)


# ---------------------------------------------------------------- child side


def _first_line(exc: BaseException) -> str:
    """The framework's own message in one line (Keras' wrapper taken off: fitbench.processes.worker.error_line)."""
    from fitbench.processes.worker import error_line

    return error_line(exc)[:300]


class _Inputs:
    """Record each top-level layer's first call (its arguments) during one forward pass of the model; the layer
    that raised is the one entered and not left."""

    def __init__(self, layers: list[Any]) -> None:
        self.calls: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}
        self.entered: list[str] = []
        self.originals = {layer.name: layer.call for layer in layers}
        for layer in layers:
            layer.call = self._wrap(layer.name, layer.call)

    def _wrap(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def recorded(*args: Any, **kwargs: Any) -> Any:
            self.entered.append(name)
            self.calls.setdefault(name, (args, kwargs))
            out = call(*args, **kwargs)
            self.entered.pop()
            return out
        return recorded


def _to_numpy(t: Any) -> Any:
    import keras
    import numpy as np

    return np.array(keras.ops.convert_to_numpy(t))


def _seeded_inputs(args: tuple[Any, ...], seed: int) -> tuple[Any, ...]:
    """The layer's floating-point positional inputs replaced by seeded normal values of the same shape and dtype:
    each layer is judged on its own, not on what an earlier nondeterministic layer handed it. Integer inputs
    (token ids) come from the data, which is seeded, and stay."""
    import keras
    import numpy as np

    from fitbench.backends.common import is_float

    rng = np.random.default_rng(seed)
    return tuple(keras.ops.convert_to_tensor(rng.standard_normal(tuple(a.shape)).astype("float32"), dtype=a.dtype)
                 if is_float(a) else a for a in args)


def _where(outputs: list[Any]) -> str | None:
    """Where the first output lives, as the framework says."""
    if not outputs:
        return None
    t = outputs[0]
    device = getattr(t, "device", None)
    if callable(device):
        device = device()
    devices = getattr(t, "devices", None)
    if device is None and callable(devices):
        device = next(iter(devices()), None)
    return str(device) if device is not None else None


def layer_steps(stack: str, switch: str | None, model: dict[str, Any], api: str, batch_size: int, seed: int,
                jit: bool = True) -> dict[str, Any]:
    """In a fresh child with the switch's environment: switch on, build the model, and run each top-level layer's
    training step alone; returns per layer its fingerprints or its error, and the whole model's compiled step."""
    from fitbench import backends
    from fitbench.determinism.compare import sha256_arrays
    from fitbench.determinism.switch import turn_on
    from fitbench.models.choice import ModelChoice
    from fitbench.models.workload import Workload
    from fitbench.stacks import parse_stack

    chosen = backends.get(parse_stack(stack).name)
    workload = Workload(ModelChoice.from_dict(model), seed)
    net = workload.build(api)  # before the switch's calls: Keras on PyTorch runs a layer's ops to build it, and a
    workload.compile(net, jit=False)  # layer refused there would leave no model to look into
    x, y = workload.batch(net, batch_size)
    switched = turn_on(stack, switch) if switch else {"determinism": None, "determinism_in_force": False}
    layers = [layer for layer in net.layers if type(layer).__name__ != "InputLayer"]
    recorder = _Inputs(layers)
    model_error = None
    try:
        net(x, training=True)
    except Exception as exc:  # the layer entered and not left is the one that raised
        model_error = (recorder.entered[-1] if recorder.entered else None, _first_line(exc))
    for layer in layers:  # the layers' own calls again, for the steps alone
        layer.call = recorder.originals[layer.name]
    rows = []
    for index, layer in enumerate(layers):
        row: dict[str, Any] = {"index": index, "name": layer.name, "layer": type(layer).__name__,
                               "params": int(sum(int(_size(v)) for v in layer.trainable_variables))}
        if layer.name not in recorder.calls:
            raised_here = model_error and model_error[0] == layer.name
            row.update(error=model_error[1] if raised_here else None, phase="forward" if raised_here else None)
            rows.append(row)
            continue
        args, kwargs = recorder.calls[layer.name]
        args = _seeded_inputs(args, seed + 1000 * (index + 1))
        if model_error and model_error[0] == layer.name:
            row.update(error=model_error[1], phase="forward")
            rows.append(row)
            continue
        try:
            outputs, grads = chosen.layer_step(layer, args, kwargs, seed + index, jit=False)
        except Exception as exc:
            row.update(error=_first_line(exc), phase="forward or gradient")
            rows.append(row)
            continue
        row.update(forward_sha256=sha256_arrays([_to_numpy(o) for o in outputs]),
                   gradient_sha256=sha256_arrays([_to_numpy(g) for g in grads]), gradients=len(grads),
                   output_device=_where(outputs))
        if jit and chosen.SUPPORTS_LAYER_JIT:  # the layer's step compiled alone, under the switch
            try:
                chosen.layer_step(layer, args, kwargs, seed + index, jit=True)
                row["jit_error"] = None
            except Exception as exc:
                row["jit_error"] = _first_line(exc)
        rows.append(row)
    compiled = _compiled_step(workload, api, batch_size) if jit else {}
    return {"switch": switched, "layers": rows, "model_error": model_error[1] if model_error else None,
            "compiled": compiled, "device": str(os.environ.get("CUDA_VISIBLE_DEVICES", ""))}


def _size(variable: Any) -> int:
    n = 1
    for d in variable.shape:
        n *= int(d)
    return n


def _compiled_step(workload: Any, api: str, batch_size: int) -> dict[str, Any]:
    """The whole model's `fit` step compiled (jit_compile=True) under the switch: does it run, is it compiled."""
    from fitbench.models.seed import jit_effective

    try:
        net = workload.build(api)
        workload.compile(net, jit=True)
        x, y = workload.batch(net, batch_size)
        net.fit(x, y, epochs=1, batch_size=batch_size, verbose=0, shuffle=False)
        return {"runs": True, "jit_effective": bool(jit_effective(net)), "error": None}
    except Exception as exc:
        return {"runs": False, "jit_effective": None, "error": _first_line(exc)}


# ---------------------------------------------------------------- parent side


@dataclass
class LayerCoverage:
    index: int
    name: str
    layer: str  # the layer's class
    params: int
    status: str  # identical | raises | differs | fell back | not reached
    detail: str | None  # the framework's message, or what differs
    jit: str | None  # the layer's step compiled alone: "compiles", the error, or null (not asked / PyTorch)


@dataclass
class CoverageRow:
    """One stack's answer for the model."""

    backend: str  # the stack
    switch: str
    switch_in_force: bool
    layers: list[LayerCoverage]
    compiled_runs: bool | None  # the whole model's compiled fit step under the switch
    compiled_jit_effective: bool | None  # false: Keras ran it uncompiled (XLA lost to the switch)
    compiled_error: str | None
    errors: list[str] = field(default_factory=list)  # a process that failed outright


@dataclass
class CoverageDocument(Document):
    """`fitbench coverage --json` (fitbench/schemas/coverage.schema.json, built from this)."""

    model: dict[str, Any]
    api: str
    batch_size: int
    device: str
    processes: int
    rows: list[CoverageRow]
    machine: str
    fitbench_version: str
    started: str
    finished: str
    command: str = "coverage"
    schema_version: int = SCHEMA_VERSION



def judge(runs: list[dict[str, Any]], device: str) -> list[LayerCoverage]:
    """Each layer's answer from the processes' results (fitbench.determinism.coverage's statuses)."""
    out = []
    for layer in runs[0]["layers"]:
        same = [next(r for r in run["layers"] if r["index"] == layer["index"]) for run in runs]
        errors = [r.get("error") for r in same if r.get("error")]
        jit_errors = [r.get("jit_error") for r in same if r.get("jit_error")]
        jit = jit_errors[0] if jit_errors else ("compiles" if "jit_error" in layer else None)
        if errors:
            phase = next(r.get("phase") for r in same if r.get("error"))
            status, detail = RAISES, f"{phase}: {errors[0]}"
        elif "forward_sha256" not in layer:
            status, detail = NOT_REACHED, "a layer before it raised inside the model"
        else:
            forward = {r["forward_sha256"] for r in same}
            gradient = {r["gradient_sha256"] for r in same}
            where = layer.get("output_device") or ""
            if len(forward) > 1 or len(gradient) > 1:
                parts = [p for p, s in (("forward", forward), ("gradient", gradient)) if len(s) > 1]
                status, detail = DIFFERS, f"{' and '.join(parts)} differ between processes"
            elif device == "gpu" and where and "gpu" not in where.lower() and "cuda" not in where.lower():
                status, detail = FELL_BACK, f"its output lives on {where}"
            else:
                status, detail = IDENTICAL, None
        out.append(LayerCoverage(index=layer["index"], name=layer["name"], layer=layer["layer"],
                                 params=layer["params"], status=status, detail=detail, jit=jit))
    return out


Run = Callable[[dict[str, Any], dict[str, str]], dict[str, Any]]  # (kwargs, env) -> layer_steps' result


def coverage(stacks: list[str], switches: dict[str, str], model: dict[str, Any], api: str, batch_size: int = 8,
             device: str = "cpu", processes: int = 2, seed: int = 0, jit: bool = True, timeout_s: float = 900,
             run: Run | None = None, log: Callable[[str], None] = lambda s: None) -> CoverageDocument:
    """Each stack: `processes` fresh processes of `layer_steps` with its switch on, judged layer by layer."""
    from fitbench.determinism.switch import default_switch
    from fitbench.processes.isolation import IsolatedError, process_env, run_isolated
    from fitbench.stacks import parse_stack

    def fresh_process(kwargs: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
        return run_isolated(layer_steps, kwargs, env=env, timeout_s=timeout_s)

    run = run or fresh_process
    started, rows = utc_stamp(), []
    for stack in stacks:
        switch = switches.get(stack) or default_switch(stack)
        env = process_env(parse_stack(stack), device, threads=None, op_determinism=switch)
        results, errors = [], []
        for i in range(processes):
            log(f"{stack}: process {i + 1}/{processes}, switch {switch}")
            try:
                results.append(run({"stack": stack, "switch": switch, "model": model, "api": api,
                                    "batch_size": batch_size, "seed": seed, "jit": jit}, env))
            except IsolatedError as exc:
                errors.append(str(exc))
        if len(results) < 2:
            rows.append(CoverageRow(stack, switch, False, [], None, None, None, errors or ["no process finished"]))
            continue
        compiled = results[0]["compiled"] or {}
        rows.append(CoverageRow(backend=stack, switch=switch,
                                switch_in_force=all(r["switch"]["determinism_in_force"] for r in results),
                                layers=judge(results, device), compiled_runs=compiled.get("runs"),
                                compiled_jit_effective=compiled.get("jit_effective"),
                                compiled_error=compiled.get("error"), errors=errors))
    return CoverageDocument(model=model, api=api, batch_size=batch_size, device=device, processes=processes,
                            rows=rows, machine=platform.node(), fitbench_version=__version__, started=started,
                            finished=utc_stamp())


def found(doc: CoverageDocument) -> bool:
    """A layer that raises, differs or fell back under the switch: what `fitbench coverage` exits 1 for."""
    return any(layer.status in (RAISES, DIFFERS, FELL_BACK) for row in doc.rows for layer in row.layers)

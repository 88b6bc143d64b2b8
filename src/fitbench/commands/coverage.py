"""`fitbench coverage`: per layer, what the determinism switch does to a model's training step."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console

from fitbench import DEVICES
from fitbench.commands import common
from fitbench.errors import UsageError
from fitbench.processes import options

NAME = "coverage"
SUMMARY = ("per layer, what the determinism switch does to a model's training step: identical, raises, differs "
           "between processes, falls back, or loses compilation")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("coverage", help="per layer: does the determinism switch cover it (identical, raises, "
                                        "differs, falls back, loses compilation)")
    common.model_flags(p, api_default="functional, or the model's one form")
    common.switch_flags(p)
    p.add_argument("--batch-size", type=common.positive_int("--batch-size", 65536), default=8,
                   help="the batch each layer's step sees (default 8)")
    p.add_argument("--processes", type=common.positive_int("--processes", 20), default=2, metavar="N",
                   help="fresh processes per backend, compared bit for bit (default 2, at least 2)")
    p.add_argument("--device", default="cpu", choices=DEVICES, help="cpu (default) or the first GPU")
    p.add_argument("--no-jit", action="store_true",
                   help="leave out the compiled steps (the model's fit step and each layer's alone)")
    return p


def main(args: argparse.Namespace, console: Console) -> int:
    from fitbench.determinism.coverage import coverage, found
    from fitbench.determinism.switch import resolve_switches
    from fitbench.models.check import check_in_child
    from fitbench.processes.devices import require_gpu
    from fitbench.report.determinism_tables import coverage_table
    from fitbench.report.io import check_output_path, keep_document

    backends, missing = options.backends(args.backend)
    if missing:
        raise UsageError("; ".join(missing.values()))
    if args.processes < 2:
        raise UsageError("--processes must be at least 2: one process has nothing to be compared with")
    switches = resolve_switches(args.switch, backends)
    model = common.model_choice(args)
    if "tf-keras" in backends:
        raise UsageError("coverage traces Keras 3 layers: tf-keras (Keras 2) is not supported; its switch is "
                         "TensorFlow's, --backend tensorflow")
    api = (options.apis(args.api, model.apis) if args.api
           else ["functional" if "functional" in model.apis else model.apis[0]])
    if len(api) != 1:
        raise UsageError("coverage checks one api at a time")
    out = check_output_path(args.json) if args.json else None
    if args.device == "gpu":
        for backend in backends:
            require_gpu(backend, "--device gpu")
    check_in_child(model, backends[0])  # a model that cannot build: one line, exit 2

    def log(line: str) -> None:
        sys.stderr.write(f"fitbench: {line}\n")
        sys.stderr.flush()

    doc = coverage(backends, switches, model.to_dict(), api[0], batch_size=args.batch_size, device=args.device,
                   processes=args.processes, seed=args.seed, jit=not args.no_jit, log=log)
    if out:
        keep_document(out, doc.to_dict())
    for table in coverage_table(doc.to_dict()):
        console.print(table)
    for row in doc.rows:  # compilation lost under the switch: shown, not a divergence (exit 0)
        refused = [layer for layer in row.layers if layer.jit and layer.jit != "compiles"]
        if refused:
            console.print(f"{row.backend}: {len(refused)} layer step(s) do not compile with the switch on: "
                          + "; ".join(f"{layer.name} ({layer.layer})" for layer in refused), highlight=False)
    for row in doc.rows:
        for error in row.errors:
            sys.stderr.write(f"fitbench: {row.backend}: a coverage process failed: {error}\n")
    if any(row.errors and not row.layers for row in doc.rows):
        return common.EXIT_FAILED
    return common.EXIT_FOUND if found(doc) else common.EXIT_OK

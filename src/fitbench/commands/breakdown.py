"""`fitbench breakdown`: where a `fit` step's time goes, part by part, on each backend (and Keras 2 beside
Keras 3), measured in processes (fitbench.measure.breakdown)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console

from fitbench.commands import common
from fitbench.processes import options

NAME = "breakdown"
SUMMARY = ("where a fit step's time goes: forward, loss, backward, optimizer, the fit loop, metrics and callbacks, "
           "each the difference of two configurations timed side by side, in processes")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, help="where a fit step's time goes, part by part, per backend")
    common.model_flags(p, api_default="functional, or the model's one form")
    p.add_argument("--batch-size", type=common.positive_int("--batch-size", 1 << 20), default=256, metavar="N",
                   help="samples per step (default 256)")
    p.add_argument("--jit", default="auto", choices=("auto", "on", "off"),
                   help="XLA (TensorFlow, JAX) or torch.compile; auto: Keras' default on each backend (default)")
    p.add_argument("--processes", type=common.positive_int("--processes", 60), default=3, metavar="N",
                   help="fresh processes per backend, interleaved across the backends (default 3)")
    p.add_argument("--rounds", type=common.positive_int("--rounds", 1000), default=5, metavar="N",
                   help="rounds of the seven configurations per process, in a drawn order (default 5)")
    p.add_argument("--steps", type=common.positive_int("--steps", 100000), default=20, metavar="N",
                   help="steps per configuration and round (default 20)")
    p.add_argument("--threads", default="1", metavar="N|default",
                   help="the frameworks' thread pools per process (default 1: the steadiest between processes)")
    p.add_argument("--flush-subnormals", action="store_true",
                   help="flush subnormal floats to zero in every process, as the asv suite does (PyTorch computes "
                        "them at full cost on a CPU; XLA flushes them already)")
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="glibc keeps freed memory in every process, as the asv suite does on torch (with glibc's "
                        "defaults PyTorch's large CPU tensors are mapped afresh each step, and page-faulted)")
    p.add_argument("--cell-timeout", type=common.positive_int("--cell-timeout", common.TIMEOUT_MAX_S),
                   default=1800, metavar="S", help="seconds one process may take (default 1800)")
    return p


def settings_from(args: argparse.Namespace) -> Any:
    """The checked settings, or UsageError (one line, exit 2) before any process starts."""
    from fitbench.errors import UsageError
    from fitbench.measure.breakdown import BreakdownSettings
    from fitbench.stacks import parse_stack

    stacks, missing = options.backends(args.backend)
    if missing:
        raise UsageError("; ".join(missing.values()))
    model = common.model_choice(args)
    if args.api and "," in args.api:
        raise UsageError("--api takes one API here: the breakdown is of one model")
    api = options.apis(args.api, model.apis)[0] if args.api else (
        "functional" if "functional" in model.apis else model.apis[0])
    if model.kind == "zoo" and any(parse_stack(s).keras_major == 2 for s in stacks):
        raise UsageError(f"--model {model.source}: the zoo is Keras 3 code; tf-keras runs the seed network, a "
                         "factory or a .keras file")
    if args.steps < 2:
        raise UsageError("--steps must be at least 2: a fit step is timed from one step's start to the next")
    return BreakdownSettings(stacks=tuple(stacks), model=model.to_dict(), api=api,
                             jit={"auto": None, "on": True, "off": False}[args.jit], batch_size=args.batch_size,
                             processes=args.processes, rounds=args.rounds, steps=args.steps,
                             threads=options.threads(args.threads), seed=args.seed, timeout_s=args.cell_timeout,
                             flush_subnormals=args.flush_subnormals,
                             keep_freed_memory=args.keep_freed_memory)


def main(args: argparse.Namespace, console: Console) -> int:
    from fitbench.measure.breakdown import run_breakdown
    from fitbench.models.check import check_in_child
    from fitbench.models.choice import ModelChoice
    from fitbench.report.breakdown_table import breakdown_lines, breakdown_table
    from fitbench.report.io import check_output_path, write_json_atomic

    settings = settings_from(args)
    out = check_output_path(args.json) if args.json else None
    choice = ModelChoice.from_dict(settings.model)
    for stack in settings.stacks:  # a factory that cannot build: one line, exit 2, before the measurement
        check_in_child(choice, stack, args.cell_timeout)

    def log(line: str) -> None:
        sys.stderr.write(f"fitbench: {line}\n")
        sys.stderr.flush()

    log(f"{len(settings.stacks)} backend(s) × {settings.processes} processes, each {settings.rounds} rounds of 7 "
        f"configurations × {settings.steps} steps")
    try:
        doc = run_breakdown(settings, progress=log)
    except KeyboardInterrupt:
        console.print("interrupted: nothing written", highlight=False)
        return common.EXIT_INTERRUPTED
    console.print(breakdown_table(doc.to_dict()))
    for line in breakdown_lines(doc.to_dict()):
        console.print(line, highlight=False)
    if out:
        write_json_atomic(out, doc.to_dict())
        console.print(f"written: {out}", highlight=False)
    failed = [f"{c.stack}: {e}" for c in doc.cells for e in c.errors]
    for line in failed:
        sys.stderr.write(f"fitbench: error in {line}\n")
    return common.EXIT_FAILED if failed else 0

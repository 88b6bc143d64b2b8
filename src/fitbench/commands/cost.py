"""`fitbench cost`: what the determinism switch costs, switch off vs on, with the process as the unit."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from rich.console import Console

from fitbench import DEVICES
from fitbench.commands import common
from fitbench.errors import UsageError
from fitbench.processes import options
from fitbench.stacks import TF_KERAS

NAME = "cost"
SUMMARY = ("what each backend's determinism switch (or N devices) costs a cell: off vs on in interleaved fresh "
           "processes, the ratio with its interval, and an A/A")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("cost", help="what the determinism switch costs: off vs on, interleaved processes, intervals")
    p.add_argument("--of", default="determinism", choices=("determinism", "devices"),
                   help="determinism: the backend's switch off vs on (default); devices: one device vs --devices "
                        "N (keras.distribution.DataParallel, JAX; simulated on a CPU)")
    p.add_argument("--devices", type=common.device_counts, default=[2], metavar="N",
                   help="with --of devices: the device count set against one (default 2)")
    common.model_flags(p, api_default="functional, or the model's one form")
    p.add_argument("--batch-sizes", default="32,256", help="comma-separated (default 32,256)")
    p.add_argument("--jit", default="both", choices=("on", "off", "both"),
                   help="XLA (TensorFlow, JAX) or torch.compile for the step (default both)")
    common.switch_flags(p)
    p.add_argument("--device", default="cpu", choices=DEVICES, help="cpu (default) or the first GPU")
    p.add_argument("--processes", type=common.positive_int("--processes", 60), default=6, metavar="N",
                   help="fresh processes per cell and column, interleaved (default 6)")
    p.add_argument("--no-aa", action="store_true",
                   help="leave out the A/A column (the switch on a second time, which must come out equivalent)")
    p.add_argument("--max-cost", type=float, default=None, metavar="X",
                   help="a gate: exit 1 when the switch (or N devices) slows a cell down by more than X (e.g. 1.35), "
                        "3 when a cell cannot be told (its interval spans X)")
    common.decision_flags(p, alpha=0.05, verdicts=False)
    p.add_argument("--threads", default="1", metavar="N|default",
                   help="the frameworks' thread pools per cell (default 1: the steadiest between processes)")
    p.add_argument("--profile", default="quick", help="the timed steps of each process: quick (default) or regular")
    p.add_argument("--cell-timeout", type=common.positive_int("--cell-timeout", common.TIMEOUT_MAX_S),
                   default=1800, metavar="S",
                   help="seconds a cell's process may take (default 1800)")
    return p


def settings_from(args: argparse.Namespace) -> Any:
    """The checked settings, or UsageError (one line, exit 2) before any process starts."""
    from fitbench.determinism.cost import CostSettings, plan
    from fitbench.determinism.switch import parse_switches, resolve_switches
    from fitbench.measure.profiles import get_profile
    from fitbench.regress.decide import DecisionSettings, budget_check

    DecisionSettings(alpha=args.alpha, threshold=args.threshold, min_change=args.min_change).check()
    backends, missing = options.backends(args.backend)
    if missing:
        raise UsageError("; ".join(missing.values()))
    if args.max_cost is not None and not (1.0 < args.max_cost < 100):
        raise UsageError(f"--max-cost is a slow-down factor above 1, e.g. 1.35; got {args.max_cost}")
    if args.processes < 2:
        raise UsageError("--processes must be at least 2: one process a side has no spread to decide on")
    switches = parse_switches(args.switch)
    if switches and args.of != "determinism":
        raise UsageError("--switch names a determinism switch: it goes with --of determinism")
    if args.of == "devices":
        devices = common.one_device_count(args.devices, "--of devices")
    elif args.devices != [2]:
        raise UsageError("--devices goes with --of devices (one device against N)")
    else:
        devices = 2
    resolve_switches(args.switch, backends)
    get_profile(args.profile)
    model = common.model_choice(args)
    apis = (options.apis(args.api, model.apis) if args.api
            else ["functional" if "functional" in model.apis else model.apis[0]])
    settings = CostSettings(backends=tuple(backends), apis=tuple(apis),
                            batch_sizes=tuple(options.batch_sizes(args.batch_sizes)),
                            jits={"on": (True,), "off": (False,), "both": (False, True)}[args.jit], device=args.device,
                            switches=switches, of=args.of, devices=devices, processes=args.processes,
                            aa=not args.no_aa,
                            threads=options.threads(args.threads), profile=args.profile, model=model.to_dict(),
                            seed=args.seed, alpha=args.alpha, threshold=args.threshold, min_change=args.min_change,
                            max_cost=args.max_cost, cell_timeout_s=args.cell_timeout)
    plan(settings)  # the cells themselves: an api the model lacks, tf-keras with another model
    cells = len(settings.backends) * len(settings.apis) * len(settings.batch_sizes) * len(settings.jits)
    # each of the two Holm families (the cost; the A/A) tests every cell, equivalence at --alpha
    note = budget_check(settings.processes, DecisionSettings(alpha=args.alpha, threshold=args.threshold,
                                                             min_change=args.min_change, equivalence_alpha=args.alpha),
                        cells)
    if note:
        sys.stderr.write(f"fitbench: {note}\n")
    return settings, model


def main(args: argparse.Namespace, console: Console) -> int:
    from fitbench.determinism.cost import CostDocument, aa_alarms, run_cost
    from fitbench.models.check import check_in_child
    from fitbench.report.determinism_tables import cost_table
    from fitbench.report.io import cache_dir, check_output_path, keep_document
    from fitbench.stacks import one_per_keras, parse_stack

    settings, model = settings_from(args)
    out = check_output_path(args.json) if args.json else None
    if settings.device == "gpu":
        from fitbench.processes.devices import require_gpu

        for stack in settings.backends:
            require_gpu(parse_stack(stack).backend, "--device gpu")
    for stack in one_per_keras([parse_stack(b) for b in settings.backends]):  # cannot build: exit 2, per Keras
        check_in_child(model, stack.name, args.cell_timeout)
    kept: list[CostDocument] = []
    # every finished round is on disk: in --json, or else in the cache (a long cost run stopped loses nothing)
    where = [out or os.path.join(cache_dir("cost"), time.strftime("cost-%Y%m%dT%H%M%S") + f"-{os.getpid()}.json")]

    def keep(doc: CostDocument) -> None:
        kept[:] = [doc]
        where[0] = keep_document(where[0], doc.to_dict())  # after a failed write: the fallback from then on

    def log(line: str) -> None:
        sys.stderr.write(f"fitbench: {line}\n")
        sys.stderr.flush()

    columns = len(settings.columns())
    cells = len(settings.backends) * len(settings.apis) * len(settings.batch_sizes) * len(settings.jits)
    log(f"{cells} cells × {columns} columns ({', '.join(settings.columns())}) × "
        f"{settings.processes} processes = {cells * columns * settings.processes} fresh processes, interleaved")
    try:
        doc = run_cost(settings, log=log, keep=keep)
    except KeyboardInterrupt:
        first = settings.columns()[0]
        rounds = len(kept[0].cells[0].step_time_s[first]) if kept and kept[0].cells else 0
        console.print(f"interrupted after {rounds} of {settings.processes} rounds"
                      + (f", kept in {where[0]}" if rounds else ", nothing written"), highlight=False)
        return common.EXIT_INTERRUPTED
    console.print(cost_table(doc.to_dict()))
    for line in cost_notes(doc.to_dict()):
        console.print(line, highlight=False)
    alarms = aa_alarms(doc)
    if alarms:
        console.print(f"[bold red]A/A alarm:[/] the same column twice came out different in {len(alarms)} cell(s): "
                      f"{'; '.join(alarms)} — the machine was not steady enough for these figures")
    failed = [f"{c.cell}, {column}: {why}" for c in doc.cells for column, why in c.errors.items()]
    for line in failed:
        sys.stderr.write(f"fitbench: error in {line}\n")
    console.print(f"{'written' if where[0] == out else 'kept in'}: {where[0]}", highlight=False)
    if settings.max_cost:
        return doc.exit_status or 0
    return common.EXIT_FAILED if failed else 0


def cost_notes(doc: dict[str, Any]) -> list[str]:
    """What a reader of the table needs besides it: where the switch turned compilation off, what a switch does on
    a CPU, and the gate's answer."""
    from fitbench.determinism.switch import get_switch

    lines: list[str] = []
    if doc["settings"].get("of") == "devices":
        return lines + _gate_lines(doc)
    lost = [c["cell"] for c in doc["cells"] if c["jit_effective"].get("off") and c["jit_effective"].get("on") is False]
    if lost:
        lines.append(f"jit lost under the switch (Keras turned compilation off): {', '.join(lost)}")
    for stack in dict.fromkeys(c["backend"] for c in doc["cells"] if c["backend"] != TF_KERAS):  # Keras 2 keeps XLA
        switch = next(c["treatment"] for c in doc["cells"] if c["backend"] == stack)
        note = get_switch(stack, switch).cpu_note
        if note:
            lines.append(f"{stack} {switch}: {note}")
    return lines + _gate_lines(doc)


def _gate_lines(doc: dict[str, Any]) -> list[str]:
    lines = []
    max_cost = doc["settings"]["max_cost"]
    if max_cost:
        over = [c["cell"] for c in doc["cells"] if c["over_max_cost"] is True]
        unknown = [c["cell"] for c in doc["cells"] if c["over_max_cost"] is None]
        if over:
            lines.append(f"over --max-cost {max_cost}×: {', '.join(over)} (exit 1)")
        elif unknown:
            lines.append(f"cannot tell against --max-cost {max_cost}× (interval spans it, or too few processes): "
                         f"{', '.join(unknown)} (exit 3)")
        else:
            lines.append(f"every cell costs less than {max_cost}× (exit 0)")
    return lines

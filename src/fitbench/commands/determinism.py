"""`fitbench determinism`: bit-identity across APIs and across fresh processes."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console

from fitbench import DEVICES
from fitbench.commands import common
from fitbench.errors import UsageError
from fitbench.models.seed import ModelSpec, parse_widths
from fitbench.processes import options
from fitbench.stacks import parse_stack

NAME = "determinism"
SUMMARY = ("are Sequential, Functional and subclassed models bit-identical, across APIs and processes, and at "
           "which epoch do they part")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    det = sub.add_parser("determinism", help="bit-identity across APIs and across processes")
    common.model_flags(det, several_backends=False)
    det.add_argument("--epochs", type=common.positive_int("--epochs"), default=3, help="epochs to train (default 3)")
    det.add_argument("--jit", default="off", choices=("on", "off"),
                     help="XLA / torch.compile for the training step (default off)")
    det.add_argument("--samples", type=common.positive_int("--samples"), default=1,
                     help="training samples: 1 = the seed's (x, y); more = seeded synthetic data (default 1)")
    det.add_argument("--batch-size", type=common.positive_int("--batch-size"), default=None,
                     help="batch size (default: --samples, one batch per epoch)")
    det.add_argument("--threads", type=common.positive_int("--threads"), default=2,
                     help="intra-op threads, TensorFlow and PyTorch (inter-op: 1) (default 2)")
    det.add_argument("--no-op-determinism", action="store_true",
                     help="leave the backend's determinism switch off (TF op determinism, torch deterministic "
                          "algorithms, XLA's GPU flag)")
    det.add_argument("--device", default="cpu", choices=DEVICES, help="train on the CPU (default) or the first GPU")
    det.add_argument("--nudge", metavar="API",
                     help="self-test: move one initial weight of API by one ULP (default: none)")
    det.add_argument("--runs", type=common.positive_int("--runs"), default=2,
                     help="separate training processes, each API compared across all of them (default 2, at least 2)")
    det.add_argument("--devices", type=common.device_counts, default=[1], metavar="N,...",
                     help="also train data-parallel on N devices (keras.distribution; JAX; simulated on a CPU), "
                          "`--runs` processes each: N against N and N against the first count (default 1)")
    det.add_argument("--hosts", type=common.positive_int("--hosts", 16), default=1, metavar="K",
                     help="also train K devices as K local processes, one device each (jax.distributed over "
                          "gloo: a cluster's code path), against one process with K devices (default 1)")
    return det


def explain_command(args: argparse.Namespace, settings: Any, pair: dict[str, Any]) -> str:
    """The `fitbench explain` line that localises a pair `fitbench determinism` found different."""
    api_a, api_b = pair["a"].split("@")[0], pair["b"].split("@")[0]
    devices = []
    if settings.nudge_api in (api_a, api_b):  # the pair differs by the nudge: explain the nudge
        kind, apis = "nudge", settings.nudge_api
    elif pair["scope"] == "devices":  # N devices against one: "2dev-run1" names N
        kind, apis = "devices", api_a
        devices = [f"--devices {pair['a'].split('@')[1].split('dev-')[0]}"]
    else:
        kind, apis = ("apis", f"{api_a},{api_b}") if pair["scope"] == "api" else ("runs", api_a)
    parts = ["fitbench explain", f"--pair {kind}", *devices, f"--api {apis}",
             f"--backend {settings.backend}", f"--epochs {pair['first_divergent_epoch'] or 1}"]
    for flag, value, default in (("--model", args.model, "seed"), ("--widths", args.widths, "256,256,256"),
                                 ("--seed", str(args.seed), "0"), ("--samples", str(args.samples), "1"),
                                 ("--batch-size", str(settings.batch_size), str(args.samples)),
                                 ("--loss", args.loss, None), ("--optimizer", args.optimizer, None),
                                 ("--data", args.data, None)):
        if value is not None and value != default:
            parts.append(f"{flag} {value}")
    if args.no_op_determinism:
        parts.append("--no-op-determinism")
    return " ".join(parts)


def explain_caveat(settings: Any) -> str | None:
    """Why the explain line may not find what this check found: explain trains on the CPU with jit off (per-layer
    values; a compiled step fuses them away), so a divergence seen on a GPU or under jit need not show there."""
    unlike = [what for what, differs in (("on the CPU", settings.device != "cpu"), ("with jit off", settings.jit))
              if differs]
    return (f"explain trains {' and '.join(unlike)}, unlike this check: the divergence may not show there"
            if unlike else None)


def main(args: argparse.Namespace, console: Console) -> int:
    from fitbench.determinism.check import check_determinism
    from fitbench.determinism.settings import DeterminismSettings
    from fitbench.models.check import check_in_child
    from fitbench.processes.devices import require_gpu
    from fitbench.processes.isolation import IsolatedError
    from fitbench.report.determinism_tables import determinism_table
    from fitbench.report.io import check_output_path, keep_document

    backends, _ = options.backends(args.backend)
    if len(backends) != 1:
        raise UsageError("determinism checks one backend at a time: --backend tensorflow, jax, torch or tf-keras")
    stack = parse_stack(backends[0])
    model = common.model_choice(args)
    settings = DeterminismSettings(
        apis=tuple(options.apis(args.api, model.apis)), spec=ModelSpec(widths=parse_widths(args.widths)),
        model=model, epochs=args.epochs,
        jit=args.jit == "on", seed=args.seed, samples=args.samples, batch_size=args.batch_size or args.samples,
        intra_op_threads=args.threads, inter_op_threads=1, op_determinism=not args.no_op_determinism,
        nudge_api=args.nudge, runs=args.runs, backend=stack.backend, keras_major=stack.keras_major,
        device=args.device, devices=tuple(args.devices), hosts=args.hosts).check()
    out = check_output_path(args.json) if args.json else None
    if args.device == "gpu":
        require_gpu(settings.backend, "--device gpu")
    check_in_child(model, settings.backend)
    try:
        doc = check_determinism(settings, log=lambda line: sys.stderr.write(f"fitbench: {line}\n")).to_dict()
    except IsolatedError as exc:  # a training process failed: nothing to compare, nothing written
        sys.stderr.write(f"fitbench: determinism run failed: {exc}\n")
        return common.EXIT_FAILED
    if out:
        keep_document(out, doc)
    console.print(determinism_table(doc))
    if doc["jit_note"]:
        console.print(f"[yellow]note:[/] {doc['jit_note']}")
    for p in doc["pairs"]:
        if not p["identical"]:
            console.print(f"[bold red]not bit-identical:[/] {p['a']} vs {p['b']}, "
                          f"first divergent epoch {p['first_divergent_epoch']}, max {p['max_ulp']} ULP")
            if p["scope"] == "hosts":  # explain's streams are single processes
                console.print("  hosts against one process: explain runs single processes; `--pair devices` with "
                              "the same device count shows the one-process side", highlight=False)
            elif settings.keras_major == 3:  # explain trains Keras 3 (its replay pair is the tf-keras one)
                console.print(f"  where they part (step, layer, phase): {explain_command(args, settings, p)}",
                              highlight=False, markup=False, soft_wrap=True)  # one line to copy
                caveat = explain_caveat(settings)
                if caveat:  # its own line: the one above stays a command to paste
                    console.print(f"  ({caveat})", highlight=False, markup=False, soft_wrap=True)
    return common.EXIT_OK if doc["all_identical"] else common.EXIT_FOUND

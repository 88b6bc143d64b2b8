"""`fitbench explain`: where two trainings that should be identical part: step, layer, phase."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console

from fitbench.commands import common
from fitbench.errors import UsageError
from fitbench.processes import options
from fitbench.stacks import parse_stack

NAME = "explain"
SUMMARY = "where two trainings that should be identical part: step, layer, phase"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    exp = sub.add_parser("explain", help="where two trainings that should be identical part: step, layer, phase")
    common.model_flags(exp, several_backends=False, keras2=False)
    exp.add_argument("--pair", default=None, choices=("apis", "runs", "nudge", "switch", "devices", "replay"),
                     help="apis: the first two --api in one process (default where the model has two); runs: "
                          "the first --api in two processes; nudge: self-test, one weight moved by one ULP; "
                          "switch: the backend's determinism switch on vs off; devices: one device vs --devices "
                          "N (DataParallel, JAX); replay: the seed question's shared legacy optimizer vs a fresh one")
    exp.add_argument("--devices", type=common.device_counts, default=[2], metavar="N",
                     help="with --pair devices: the device count set against one device (default 2)")
    exp.add_argument("--epochs", type=common.positive_int("--epochs"), default=3, help="epochs to train (default 3)")
    exp.add_argument("--samples", type=common.positive_int("--samples"), default=1,
                     help="training samples: 1 = the seed's (x, y); more = seeded synthetic data (default 1)")
    exp.add_argument("--batch-size", type=common.positive_int("--batch-size"), default=None,
                     help="batch size (default: --samples, one batch per epoch)")
    exp.add_argument("--no-op-determinism", action="store_true", help="leave the backend's determinism switch off")
    return exp


def main(args: argparse.Namespace, console: Console) -> int:
    from fitbench.determinism.explain import EXIT_DIVERGED, EXIT_IDENTICAL, ExplainSettings, explain
    from fitbench.models.check import check_in_child
    from fitbench.processes.isolation import IsolatedError
    from fitbench.report.determinism_tables import explain_report
    from fitbench.report.io import check_output_path, keep_document

    backends, _ = options.backends(args.backend)
    if len(backends) != 1 or parse_stack(backends[0]).keras_major != 3:
        raise UsageError("explain takes one Keras 3 backend: --backend tensorflow, jax or torch "
                         "(its replay pair is the one that trains tf-keras)")
    model = common.model_choice(args)
    apis = tuple(options.apis(args.api, model.apis))
    pair = args.pair or ("apis" if len(apis) > 1 else "runs")
    settings = ExplainSettings(pair=pair, apis=apis, backend=backends[0], model=model, seed=args.seed,
                               epochs=args.epochs, samples=args.samples, batch_size=args.batch_size or args.samples,
                               op_determinism=not args.no_op_determinism,
                               devices=(common.one_device_count(args.devices, "--pair devices")
                                        if pair == "devices" else 2)
                               ).check()
    out = check_output_path(args.json) if args.json else None
    if pair == "replay":
        from fitbench.adapters import tf_keras

        if not tf_keras.available():
            raise UsageError("--pair replay needs tf-keras (the legacy optimizer): pip install 'fitbench[legacy]'")
    check_in_child(model, settings.backend)
    try:
        with console.status("training both streams step by step..."):
            doc = explain(settings).to_dict()
    except IsolatedError as exc:
        sys.stderr.write(f"fitbench: explain failed: {exc}\n")
        return common.EXIT_FAILED
    if out:
        keep_document(out, doc)
    console.print(explain_report(doc), highlight=False, markup=False, soft_wrap=True)
    return EXIT_IDENTICAL if doc["identical"] else EXIT_DIVERGED

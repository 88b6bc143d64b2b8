"""`fitbench asv-init`: an asv suite for your own model in your own repository."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from fitbench.commands.common import EXIT_OK
from fitbench.processes import options

NAME = "asv-init"
SUMMARY = "an asv suite for your own model in your own repository"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    init = sub.add_parser("asv-init", help="write asv.conf.json and benchmarks/ for your model into your repository")
    init.add_argument("--model", required=True, metavar="SPEC",
                      help="your factory, package.module:function (or a zoo name to try it out)")
    init.add_argument("--repo", default=".", help="your git repository's top directory (default: here)")
    init.add_argument("--backend", default="tensorflow",
                      help="comma-separated KERAS_BACKEND values for asv's matrix (default tensorflow)")
    init.add_argument("--batch-sizes", default="256", help="comma-separated batch sizes to time (default 256)")
    init.add_argument("--loss", default=None, help="loss for a model that comes uncompiled (default mse)")
    init.add_argument("--optimizer", default=None, help="optimizer for a model that comes uncompiled (default adam)")
    init.add_argument("--data", default=None, metavar="FILE.npz",
                      help="x and y to train on: an .npz file inside the repository, relative to it")
    init.add_argument("--fitbench", default=None, metavar="PIP-SPEC",
                      help="how asv installs fitbench (default: like this one, from its source directory or "
                           "the package index)")
    init.add_argument("--force", action="store_true", help="overwrite asv.conf.json and benchmarks/bench_model.py")
    init.add_argument("--no-check", action="store_true",
                      help="do not build the model and train one step first")
    return init


def main(args: argparse.Namespace, console: Console) -> int:
    from fitbench.regress import asvinit

    settings = asvinit.InitSettings(
        repo=args.repo, model=args.model, backends=tuple(options.backend_names(args.backend) or ()),
        batch_sizes=tuple(options.batch_sizes(args.batch_sizes)), loss=args.loss, optimizer=args.optimizer,
        data=args.data,
        fitbench_spec=args.fitbench, force=args.force, check=not args.no_check)
    written = asvinit.init(settings, progress=lambda line: console.print(line, highlight=False))
    for path in written:
        extra = f" (added {', '.join(asvinit.IGNORED)} where missing)" if path.name == ".gitignore" else ""
        console.print(f"wrote {path}{extra}", highlight=False)
    bench = asvinit.alert_bench(settings.batch_sizes)
    console.print("next: commit them, then\n"
                  "  asv machine --yes && asv run --record-samples HEAD^! && asv publish\n"
                  "      # the report's point for this commit (2 processes: a point, not a decision)\n"
                  "  fitbench calibrate --bench '" + bench + "'\n"
                  "      # once per machine: its noise, so the alert plans enough processes\n"
                  f"  fitbench alert main HEAD --bench '{bench}'\n"
                  "      # a pull request: slower, or not deterministic? (runs its own pairs of processes, 12 a "
                  "stage or more as the cells need, and says how many before it starts)", highlight=False)
    return EXIT_OK

"""`fitbench calibrate`: one commit against itself, each cell's between-process spread on this machine."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console

from fitbench.commands.common import EXIT_FAILED, EXIT_OK, output_path, positive_int
from fitbench.processes import options

NAME = "calibrate"
SUMMARY = "measure this machine's between-process noise for the alert"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    cal = sub.add_parser("calibrate", help="one commit against itself: each cell's between-process spread here")
    cal.add_argument("rev", nargs="?", default="HEAD", help="the commit to run (default HEAD)")
    cal.add_argument("--bench", default=None, help="regular expression of asv benchmarks (default: the alert's)")
    cal.add_argument("--processes", type=positive_int("--processes"), default=12, metavar="N",
                     help="fresh processes per cell (default 12)")
    cal.add_argument("--threshold", type=float, default=0.10, help="change to size the alert for (default 0.10)")
    cal.add_argument("--alpha", type=float, default=0.01, help="the alert's family-wise level (default 0.01)")
    cal.add_argument("--repo", default=".", help="the git repository with asv.conf.json (default: here)")
    cal.add_argument("--backend", default=None, help="comma-separated KERAS_BACKEND values (default: all)")
    cal.add_argument("--log", default="calibrate-asv.log", metavar="PATH", help="asv's log (default calibrate-asv.log)")
    cal.add_argument("--json", metavar="PATH", type=output_path("--json"),
                     help="also write the calibration here")
    cal.add_argument("--no-store", action="store_true",
                     help="measure without replacing this machine's stored calibration (e.g. of a planted commit)")
    return cal


def main(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from fitbench.regress import alertdoc
    from fitbench.regress.calibration import calibrate
    from fitbench.regress.decide import DecisionSettings
    from fitbench.report.io import check_output_path, keep_document
    from fitbench.report.tables import calibration_table

    # the alert's rule (one-sided alarm), so that the table plans what the alert will
    settings = DecisionSettings(alpha=args.alpha, threshold=args.threshold, min_change=0.0, one_sided=True).check()
    out = check_output_path(args.json) if args.json else None
    check_output_path(args.log)
    try:
        result, path = calibrate(args.repo, args.rev, args.bench or alertdoc.DEFAULT_BENCH, args.processes,
                                 Path(args.log), options.backend_names(args.backend), save=not args.no_store,
                                 progress=lambda line: sys.stderr.write(f"fitbench: {line}\n"))
    except RuntimeError as exc:
        sys.stderr.write(f"fitbench: error: {exc}\n")
        return EXIT_FAILED
    if out:
        keep_document(out, result.to_dict())
    console.print(calibration_table(result, settings))
    console.print(f"not stored (--no-store); {path} is unchanged" if args.no_store
                  else f"stored: {path} (fitbench alert reads it on this machine)")
    return EXIT_OK

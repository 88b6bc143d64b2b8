"""`fitbench alert`: asv on two commits, decided process by process, in one or two stages."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from rich.console import Console

from fitbench.commands.common import asv_repo_flags, decision_flags, decision_settings, design_flag, positive_int
from fitbench.errors import UsageError
from fitbench.processes import options
from fitbench.regress.alertdoc import DEFAULT_MAX_MINUTES

NAME = "alert"
SUMMARY = "run asv on two commits and say what got slower, process by process"
DEFAULT_STAGE_PROCESSES = 10  # fitbench.regress.alert.DEFAULT_PROCESSES, without importing the alert to parse


def add_parser(sub: Any) -> argparse.ArgumentParser:
    alert = sub.add_parser("alert", help="run asv on two commits and report what got worse, process by process")
    alert.add_argument("base", nargs="?", help="base commit (e.g. origin/main)")
    alert.add_argument("head", nargs="?", help="head commit (e.g. HEAD)")
    alert.add_argument("--bench", default=None,
                       help="regular expression of asv benchmarks (default: StepTime at batch 256 and the "
                            "determinism tracks)")
    design_flag(alert)
    alert.add_argument("--processes", type=positive_int("--processes"), default=None, metavar="N",
                       help="processes per commit in each stage: pairs, in a paired design (default: the fewest "
                            "that can decide, plus a margin; unpaired: planned from this machine's calibration, "
                            f"else {DEFAULT_STAGE_PROCESSES})")
    decision_flags(alert)
    alert.add_argument("--stages", type=int, choices=(1, 2), default=2,
                       help="2 (default): cells still inconclusive after the first processes get as many again, "
                            "alpha split across the stages; 1: one look at the full alpha")
    alert.add_argument("--max-minutes", type=float, default=DEFAULT_MAX_MINUTES, metavar="M",
                       help="the second stage shrinks, or is skipped, to end within this (default "
                            f"{DEFAULT_MAX_MINUTES:g})")
    alert.add_argument("--order-seed", type=int, default=None, metavar="N",
                       help="which commit runs first in each environment is drawn at random; this fixes the draw "
                            "(the report records the seed it used)")
    asv_repo_flags(alert, "alert-report", "alert.md, alert.json and asv.log")
    alert.add_argument("--stored", action="store_true",
                       help="decide on what is already stored for both commits (no new run): a paired alert's "
                            "pairs, or `asv run --record-samples` processes")
    alert.add_argument("--machine", default=None, metavar="NAME",
                       help="the asv machine name to store under (a CI runner: `runner-1`; default this machine's); "
                            "with --stored, comma-separated: the runners whose results are combined, each compared "
                            "only with itself")
    alert.add_argument("--results", action="append", default=None, metavar="DIR",
                       help="with --stored, repeatable: an asv results folder of another run or runner (each "
                            "machine in it is a runner)")
    alert.add_argument("--from-html", metavar="DIR",
                       help="report the regressions in a published asv report instead (no commits, no run)")
    return alert


def main(args: argparse.Namespace, console: Console) -> int:
    from fitbench.regress import alert as alerts
    from fitbench.regress import alertdoc, alertreport

    if args.from_html:
        if args.base or args.head:
            raise UsageError("--from-html takes no commits")
        status, markdown = alertreport.from_html(args.from_html)
        print(markdown)
        return status
    if not (args.base and args.head):
        raise UsageError("alert needs BASE and HEAD commits (or --from-html DIR)")
    from fitbench.report.io import check_output_dir, check_output_path, keep_document

    check_output_dir(args.out, "--out")
    json_copy = check_output_path(args.json) if args.json else None
    settings = decision_settings(args)
    request = alertdoc.AlertOptions(bench=args.bench or alertdoc.DEFAULT_BENCH,
                                  backends=tuple(options.backend_names(args.backend) or ()) or None,
                                  processes=args.processes, stages=args.stages, max_minutes=args.max_minutes,
                                  order_seed=args.order_seed, stored=args.stored,
                                  undecided_ok=args.undecided_ok, design=args.design,
                                  machines=tuple(m.strip() for m in args.machine.split(",") if m.strip())
                                  if args.machine else None,
                                  results=tuple(args.results) if args.results else None).check()
    status, report = alerts.alert(args.repo, args.base, args.head, args.out, settings, request,
                                  progress=lambda line: sys.stderr.write(f"fitbench: {line}\n"))
    if json_copy:
        keep_document(json_copy, report)
    if report.get("error"):
        sys.stderr.write(f"fitbench: error: {report['error']}\n")
        return status
    print(alertreport.render_markdown(report))
    failed = [c for c in report["comparisons"] if c["change"] == "failed"]
    for c in failed:
        sys.stderr.write(f"fitbench: benchmark failed on {' and '.join(c['failed_on'])}: {c['benchmark']} "
                         f"{c['params']}{' on ' + c['backend'] if c.get('backend') else ''}\n")
    undecided = [c for c in report["comparisons"] if c["change"] == "inconclusive"]
    if undecided and status in (alertdoc.EXIT_UNDECIDED, alertdoc.EXIT_OK):
        accepted = "accepted (--undecided-ok)" if status == alertdoc.EXIT_OK else "exit 3; --undecided-ok accepts it"
        sys.stderr.write(f"fitbench: undecided: {len(undecided)} cell(s) could not be decided, not a pass "
                         f"({accepted})\n")
    log = "" if args.stored else f"; logs: {os.path.join(args.out, 'asv.log')}, workers.log"
    print(f"report: {os.path.join(args.out, 'alert.md')} and alert.json{log}")
    return status

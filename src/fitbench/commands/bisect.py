"""`fitbench bisect GOOD BAD`: which commit made it slower, each step decided like an alert."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from rich.console import Console

from fitbench import options
from fitbench.commands.common import asv_repo_flags, decision_flags, decision_settings, positive_int

NAME = "bisect"
SUMMARY = "find the first commit on GOOD..BAD whose cells are worse than GOOD's, each step an interleaved alert"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, help=SUMMARY)
    p.add_argument("good", help="a commit without the regression (e.g. the alert's BASE)")
    p.add_argument("bad", help="a commit with it (e.g. the alert's HEAD); GOOD must be on its first-parent history")
    p.add_argument("--bench", default=None,
                   help="regular expression of asv benchmarks to look at first (default: the alert's); later "
                        "steps measure only the cells worse at BAD")
    p.add_argument("--processes", type=positive_int("--processes"), default=None, metavar="N",
                   help="processes per commit in each stage of each step (default: as the alert plans them)")
    decision_flags(p)
    p.add_argument("--stages", type=int, choices=(1, 2), default=2,
                   help="2 (default): a step's inconclusive cells get a second stage; 1: one look")
    p.add_argument("--max-minutes", type=float, default=30.0, metavar="M",
                   help="per step: its second stage shrinks, or is skipped, to end within this (default 30)")
    p.add_argument("--order-seed", type=int, default=None, metavar="N",
                   help="fixes which commit runs first in each environment (default: drawn, and recorded)")
    asv_repo_flags(p, "bisect-report", "bisect.md, bisect.json and every step's alert report")
    return p


def main(args: argparse.Namespace, console: Console) -> int:
    from fitbench.regress import alert as alerts
    from fitbench.regress.bisect import bisect, render_markdown
    from fitbench.report.io import check_output_dir, check_output_path, write_json_atomic

    check_output_dir(args.out, "--out")
    out = check_output_path(args.json) if args.json else None
    request = alerts.AlertOptions(bench=args.bench or alerts.DEFAULT_BENCH,
                                  backends=tuple(options.backend_names(args.backend) or ()) or None,
                                  processes=args.processes, stages=args.stages, max_minutes=args.max_minutes,
                                  order_seed=args.order_seed, undecided_ok=args.undecided_ok).check()
    doc = bisect(args.repo, args.good, args.bad, args.out, decision_settings(args), request,
                 progress=lambda line: sys.stderr.write(f"fitbench: {line}\n"))
    if out:
        write_json_atomic(out, doc.to_dict())
    print(render_markdown(doc))
    print(f"report: {os.path.join(args.out, 'bisect.md')} and bisect.json")
    if doc.verdict == "undecided":
        sys.stderr.write(f"fitbench: undecided: {doc.note} (exit {doc.exit_status})\n")
    return doc.exit_status

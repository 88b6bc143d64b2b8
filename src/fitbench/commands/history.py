"""`fitbench history`: change points and drift over asv's stored results, along the first-parent history."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from rich.console import Console

from fitbench.commands.common import asv_repo_flags
from fitbench.processes import options

NAME = "history"
SUMMARY = "change points (E-divisive means) and drift per cell over what asv stored along the history"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, help=SUMMARY)
    p.add_argument("--since", required=True, metavar="REV",
                   help="the oldest commit of the window (it must be on the first-parent history of --until)")
    p.add_argument("--until", default="HEAD", metavar="REV", help="the newest commit (default HEAD)")
    p.add_argument("--bench", default=r"StepTime\.time_step",
                   help=r"regular expression of asv benchmarks (default StepTime\.time_step: every batch size)")
    p.add_argument("--alpha", type=float, default=0.01,
                   help="level of each change-point test and of the drift test (default 0.01)")
    p.add_argument("--min-change", type=float, default=0.05,
                   help="a change point or drift smaller than this is not called worse (default 0.05)")
    p.add_argument("--machine", default=None,
                   help="whose stored results (asv's machine name; default: this machine's, as asv names it)")
    asv_repo_flags(p, "history-report", "history.md and history.json")
    return p


def main(args: argparse.Namespace, console: Console) -> int:
    from fitbench.errors import UsageError
    from fitbench.regress.history import history, render_markdown
    from fitbench.report.io import (
        check_output_dir,
        check_output_path,
        keep_document,
        keep_markdown,
    )

    if not 0 <= args.min_change < 1:
        raise UsageError(f"--min-change must be between 0 and 1, got {args.min_change}")
    check_output_dir(args.out, "--out")
    out = check_output_path(args.json) if args.json else None
    doc = history(args.repo, args.since, args.until, args.bench, options.backend_names(args.backend),
                  args.alpha, args.min_change, machine=args.machine,
                  progress=lambda line: sys.stderr.write(f"fitbench: {line}\n"))
    os.makedirs(args.out, exist_ok=True)
    markdown = render_markdown(doc)
    keep_document(os.path.join(args.out, "history.json"), doc.to_dict())
    keep_markdown(os.path.join(args.out, "history.md"), markdown)
    if out:
        keep_document(out, doc.to_dict())
    print(markdown)
    print(f"report: {os.path.join(args.out, 'history.md')} and history.json")
    return doc.exit_status

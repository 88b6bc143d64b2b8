"""`fitbench bisect GOOD BAD`: which commit made it slower, each step decided like an alert."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from typing import Any

from rich.console import Console

from fitbench.commands import common
from fitbench.errors import UsageError
from fitbench.processes import options

NAME = "bisect"
SUMMARY = ("find the first commit on GOOD..BAD whose cells are worse than GOOD's, each step an interleaved alert; "
           "with --package, the first released version of a dependency")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, help=SUMMARY)
    p.add_argument("good", help="a commit without the regression (e.g. the alert's BASE); with --package, a version")
    p.add_argument("bad", help="a commit with it (e.g. the alert's HEAD); GOOD must be on its first-parent history; "
                               "with --package, a later version")
    p.add_argument("--package", metavar="NAME", default=None,
                   help="search NAME's released versions after GOOD up to BAD instead of commits (e.g. keras), each "
                        "step a `fitbench versions GOOD,CANDIDATE` in versions' cached environments")
    p.add_argument("--batch-sizes", default="256",
                   help="with --package: the batch sizes of the model's cells (default 256)")
    p.add_argument("--model", default=None, metavar="SPEC",
                   help="with --package: seed (default), a zoo model, package.module:function or a .keras file, as "
                        "fitbench versions takes it (a commit bisection measures the models asv-init set up)")
    p.add_argument("--data", default=None, metavar="FILE.npz", help="with --package and --model: x and y")
    p.add_argument("--env-dir", default=None, metavar="DIR", type=common.output_path("--env-dir"),
                   help="with --package: where the environments are cached (default as fitbench versions)")
    p.add_argument("--bench", default=None,
                   help="regular expression of asv benchmarks to look at first (default: the alert's); later "
                        "steps measure only the cells worse at BAD")
    common.design_flag(p)
    p.add_argument("--processes", type=common.positive_int("--processes"), default=None, metavar="N",
                   help="processes per commit (pairs, in a paired design) in each stage of each step (default: as "
                        "the alert plans them; with --package 6 per version)")
    common.decision_flags(p)
    p.add_argument("--stages", type=int, choices=(1, 2), default=2,
                   help="2 (default): a step's inconclusive cells get a second stage; 1: one look")
    p.add_argument("--max-minutes", type=float, default=30.0, metavar="M",
                   help="per step: its second stage shrinks, or is skipped, to end within this (default 30)")
    p.add_argument("--order-seed", type=int, default=None, metavar="N",
                   help="fixes which commit runs first in each environment (default: drawn, and recorded)")
    common.asv_repo_flags(p, "bisect-report", "bisect.md, bisect.json and every step's alert report")
    return p


def main(args: argparse.Namespace, console: Console) -> int:
    if args.package:
        return _package(args)
    for flag, given in (("--batch-sizes", args.batch_sizes != "256"), ("--env-dir", args.env_dir),
                        ("--model", args.model), ("--data", args.data)):
        if given:
            raise UsageError(f"{flag} goes with --package (a commit bisection measures asv's benchmarks)")
    from fitbench.regress import alertdoc
    from fitbench.regress.bisect import bisect
    from fitbench.report.io import check_output_dir, check_output_path

    check_output_dir(args.out, "--out")
    out = check_output_path(args.json) if args.json else None
    request = alertdoc.AlertOptions(bench=args.bench or alertdoc.DEFAULT_BENCH,
                                  backends=tuple(options.backend_names(args.backend) or ()) or None,
                                  processes=args.processes, stages=args.stages, max_minutes=args.max_minutes,
                                  order_seed=args.order_seed, undecided_ok=args.undecided_ok,
                                  design=args.design).check()
    doc = bisect(args.repo, args.good, args.bad, args.out, common.decision_settings(args), request,
                 progress=lambda line: sys.stderr.write(f"fitbench: {line}\n"), copies=(out,) if out else ())
    return _report(args, doc, None)  # the --json copy is kept by bisect, as bisect.json is


def _report(args: argparse.Namespace, doc: Any, out: str | None) -> int:
    """What both bisections print and keep: the Markdown, where the report is, an undecided search's line."""
    from fitbench.regress.bisect import render_markdown
    from fitbench.report.io import keep_document

    if out:
        keep_document(out, doc.to_dict())
    print(render_markdown(doc))
    print(f"report: {os.path.join(args.out, 'bisect.md')} and bisect.json")
    if doc.verdict == "undecided":
        sys.stderr.write(f"fitbench: undecided: {doc.note} (exit {doc.exit_status})\n")
    return doc.exit_status


def _package(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fitbench.commands.versions import check_budget
    from fitbench.models.check import check_in_child
    from fitbench.models.choice import parse_model
    from fitbench.regress.decide import DecisionSettings
    from fitbench.report.io import check_output_dir, check_output_path
    from fitbench.stacks import keras_2_beside_3, one_per_keras, parse_stack, require_model_kind
    from fitbench.versions.bisect import bisect_package
    from fitbench.versions.compare import VersionsSettings
    from fitbench.versions.spec import parse_columns

    for flag, given in (("--bench", args.bench), ("--order-seed", args.order_seed is not None),
                        ("--repo", args.repo != "."), ("--stages", args.stages != 2),
                        ("--max-minutes", args.max_minutes != 30.0), ("--design", args.design)):
        if given:
            raise UsageError(f"{flag} is for a bisection over commits (asv); --package measures with fitbench versions")
    parse_columns([f"{args.package}=={args.good},{args.bad}"])  # the package and versions, as versions reads them
    backends, missing = options.backends(args.backend or "tensorflow")
    if missing:
        raise UsageError("; ".join(missing.values()))
    model = parse_model(args.model, data=args.data)
    stacks = [parse_stack(b) for b in backends]
    require_model_kind(stacks, model.source)
    options.batch_sizes(args.batch_sizes)
    decision = common.decision_settings(args)  # the commit bisection's checks and bounds
    if decision.equivalence_alpha != DecisionSettings().equivalence_alpha:
        raise UsageError("--equivalence-alpha does not go with --package: fitbench versions tests equivalence at "
                         "--alpha")
    if args.processes is not None and args.processes < 2:
        raise UsageError(f"--processes must be at least 2 (a comparison needs a spread), got {args.processes}")
    check_output_dir(args.out, "--out")
    if args.env_dir:
        check_output_dir(args.env_dir, "--env-dir")
    out = check_output_path(args.json) if args.json else None
    # each step: every cell of every stack against GOOD (and Keras 3 against Keras 2 where both run)
    cells = len(stacks) * len(options.batch_sizes(args.batch_sizes))
    # versions decides both directions at --alpha (two-sided): its budget is checked so
    check_budget(args.processes or 6, replace(decision, one_sided=False),
                 cells + cells // len(stacks) * 2 * keras_2_beside_3(stacks), refuse=True)
    for stack in one_per_keras(stacks):  # a bad factory: one line, before any step
        check_in_child(model, stack.name)
    settings = VersionsSettings(backends=",".join(backends), batch_sizes=args.batch_sizes,
                                processes=args.processes or 6, alpha=decision.alpha, threshold=decision.threshold,
                                min_change=decision.min_change, model=model.source, data=model.data,
                                apis="functional" if model.kind == "seed" else model.apis[0])
    doc = bisect_package(args.package, args.good, args.bad, args.out, settings,
                         env_root=Path(args.env_dir) if args.env_dir else None, undecided_ok=args.undecided_ok,
                         progress=lambda line: sys.stderr.write(f"fitbench: {line}\n"))
    return _report(args, doc, out)

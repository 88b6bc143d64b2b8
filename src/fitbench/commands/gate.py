"""`fitbench gate`: the alert's decision over pytest-benchmark sessions."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from fitbench.commands.common import decision_flags, decision_settings, output_path

NAME = "gate"
SUMMARY = "the same decision over pytest-benchmark sessions"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    gate = sub.add_parser("gate", help="micro-benchmark gate: several pytest-benchmark sessions per side, "
                                       "decided session by session")
    gate.add_argument("--base", nargs="+", required=True, metavar="JSON", help="--benchmark-json files of the base")
    gate.add_argument("--head", nargs="+", required=True, metavar="JSON", help="--benchmark-json files of the head")
    decision_flags(gate, compile_time=False)  # pytest-benchmark sessions: no compile-time cells
    gate.add_argument("--json", metavar="PATH", type=output_path("--json"),
                      help="write the decisions as one JSON document")
    return gate


def main(args: argparse.Namespace, console: Console) -> int:
    from fitbench.regress.gate import gate
    from fitbench.report.io import check_output_path, keep_document
    from fitbench.report.tables import gate_table

    settings = decision_settings(args)
    out = check_output_path(args.json) if args.json else None
    doc = gate(args.base, args.head, settings, undecided_ok=args.undecided_ok)
    if out:
        keep_document(out, doc)
    console.print(gate_table(doc))
    return doc["exit_status"]

"""`fitbench replay`: the question fitbench started from, replayed."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from fitbench.commands.common import EXIT_FAILED, EXIT_OK, output_path, positive_int, seed_int

NAME = "replay"
SUMMARY = "the question fitbench started from: one optimizer shared by two models"
ALIASES = ("seed",)  # `seed` was the first name; it is also the random seed's flag, so it is not offered


def add_parser(sub: Any) -> argparse.ArgumentParser:
    replay = sub.add_parser("replay", help="replay the question fitbench started from: shared vs fresh optimizer")
    replay.add_argument("--epochs", type=positive_int("--epochs"), default=200, help="epochs to train (default 200)")
    replay.add_argument("--seed", type=seed_int, default=0, help="random seed (default 0)")
    replay.add_argument("--json", metavar="PATH", type=output_path("--json"),
                        help="write the replay as one JSON document")
    return replay


def main(args: argparse.Namespace, console: Console) -> int:
    from fitbench.determinism.replay import replay_question
    from fitbench.report.determinism_tables import replay_table
    from fitbench.report.io import check_output_path, keep_document

    out = check_output_path(args.json) if args.json else None
    with console.status(f"replaying the question ({args.epochs} epochs, up to four processes)..."):
        doc = replay_question(epochs=args.epochs, seed=args.seed)
    if out:
        keep_document(out, doc.to_dict())
    console.print(replay_table(doc))
    console.print(f"Keras 3 with one shared optimizer: {doc.keras3_shared_outcome}")
    if doc.legacy_note:
        console.print(f"[yellow]note:[/] {doc.legacy_note}")
    return EXIT_OK if doc.succeeded else EXIT_FAILED

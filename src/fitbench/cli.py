"""The `fitbench` command: the parser built from `fitbench.commands` (one module per command) and dispatch."""

from __future__ import annotations

import argparse
import signal
import sys
import textwrap
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

from fitbench import __version__
from fitbench.commands import ALIASES, COMMANDS, by_name
from fitbench.commands.common import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, Parser, crash_log, error_line
from fitbench.errors import UsageError


def description() -> str:
    """The top-level help: every command with its summary, from the commands themselves."""
    lines = ["fitbench: how fast is your Keras fit loop, is its training deterministic, and did a commit",
             "change either?", ""]
    for module in COMMANDS:  # 26 columns of name, the summary in the rest of 100
        wrapped = textwrap.wrap(module.SUMMARY, 74)
        lines.append(f"  fitbench {module.NAME:<14} {wrapped[0]}")
        lines.extend(f"  {'':<23} {line}" for line in wrapped[1:])
    lines += ["", "Every cell runs in a process of its own. Exit status: 0 done, nothing found; 1 found (a regression,",
              "a divergence, a culprit); 2 bad input, or a measurement failed; 3 undecided (too noisy or too few",
              "to tell, never a pass); 70 fitbench itself failed; 130 interrupted. `fitbench COMMAND --help` for",
              "each; docs/reference.md for all of it."]
    return "\n".join(lines)


def _columns() -> int:
    import os

    text = os.environ.get("COLUMNS", "")
    return int(text) if text.isdigit() and int(text) >= 40 else 100


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fitbench", description=description(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fitbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def stop_on_signals() -> None:
    """SIGTERM (what CI runners and `timeout` send) and SIGHUP (a closed terminal) stop a command the way Ctrl-C
    does: the running child is killed (subprocess does that on the way out), finished cells are kept, one line
    says so. Without this, SIGTERM ended the parent at once and left the worker running to no one."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _interrupt)


class _Console(Console):
    """Text is soft-wrapped (a path, a command to copy is never broken by rich); a table is not: with soft wrap on,
    rich would leave its title and caption unwrapped, lines of 120-200 columns (found in a new user's trial)."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        if "soft_wrap" not in kwargs and any(isinstance(o, Table) for o in objects):
            kwargs["soft_wrap"] = False
        super().print(*objects, **kwargs)


def make_console() -> Console:
    """The commands' console. A pipe or a CI log: $COLUMNS when set, else 100 columns (every table fits 100
    without cutting a number, tests/test_tables.py), instead of rich's 80-column default for output that is not a
    terminal."""
    return _Console(soft_wrap=True) if sys.stdout.isatty() else _Console(width=_columns(), soft_wrap=True)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    alias = argv[0] if argv and argv[0] in ALIASES else None
    if alias:  # an old name: accepted, not offered among the choices
        argv[0] = ALIASES[alias]
    args = build_parser().parse_args(argv)
    if alias:  # after parsing: bad input stays one line
        sys.stderr.write(f"fitbench: note: `fitbench {alias}` is now `fitbench {ALIASES[alias]}`\n")
    console = make_console()
    stop_on_signals()
    try:
        from fitbench.processes.isolation import sweep_stale_tempdirs

        sweep_stale_tempdirs()  # what a killed fitbench left in the temporary folder
        return by_name(args.command).main(args, console)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM/SIGHUP (a CI timeout): the command kept what it could
        sys.stderr.write("fitbench: interrupted (what was measured is kept where the lines above say; nothing "
                         "half-written)\n")
        return EXIT_INTERRUPTED
    except UsageError as exc:
        sys.stderr.write(error_line(str(exc)))
        return EXIT_USAGE
    except Exception as exc:  # a bug, not a finding: never exit 1, which a CI job reads as "found"
        where = crash_log(argv)
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        sys.stderr.write(f"fitbench: internal error: {type(exc).__name__}: {first} (the traceback is in {where}; "
                         f"exit {EXIT_INTERNAL})\n")
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())

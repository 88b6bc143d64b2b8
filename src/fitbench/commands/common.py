"""What the commands share: the parser that errs in one line, exit statuses, and the flags that mean the same
on every command that takes them (one name, one help text, one default, one check)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn, Sequence

from fitbench import APIS, BACKENDS, exits
from fitbench.models.choice import ModelChoice
from fitbench.models.seed import parse_widths
from fitbench.regress.decide import DEFAULT_COMPILE_THRESHOLD

# the one table of exit statuses (fitbench.exits), under the names the commands use: a failed measurement is an
# error (2), as a failed benchmark is in an alert; 3 is "could not tell", on every command
EXIT_OK, EXIT_FOUND, EXIT_USAGE, EXIT_FAILED = exits.OK, exits.FOUND, exits.ERROR, exits.ERROR
EXIT_UNDECIDED, EXIT_INTERRUPTED, EXIT_INTERNAL = exits.UNDECIDED, exits.INTERRUPTED, exits.INTERNAL


def error_line(message: str) -> str:
    """`fitbench: error: ...` as one line: a library's message cut at its first line, and control characters
    a user typed into a value (a carriage return, an escape sequence) shown escaped, not acted on by the
    terminal."""
    first = (str(message).strip().splitlines() or [""])[0]
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in first)
    return f"fitbench: error: {shown}\n"


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        import re

        # "argument --epochs: --epochs must be ..." says the flag twice: keep the message that names it
        named = re.match(r"argument ([^:]+): (.*)", message, re.S)
        if named and any(flag in named.group(2) for flag in named.group(1).split("/")):
            message = named.group(2)
        sys.stderr.write(error_line(message))
        sys.exit(EXIT_USAGE)


def positive_int(name: str, maximum: int | None = None):  # noqa: ANN201 - argparse type factory
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a positive integer, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be a positive integer, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{name} must be at most {maximum}, got {value}")
        return value
    return parse


def device_counts(text: str) -> list[int]:
    """--devices: device counts like 1,2,4 (fitbench.measure.distributed), the same grammar in every command."""
    from fitbench.errors import UsageError
    from fitbench.measure.distributed import parse_device_counts

    try:
        return parse_device_counts(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def one_device_count(args_devices: list[int], what: str) -> int:
    """The N of `--devices N` where a command sets one device against N (cost --of devices, explain)."""
    from fitbench.errors import UsageError

    if len(args_devices) != 1 or args_devices[0] < 2:
        raise UsageError(f"{what} sets one device against --devices N: give one count, 2 or more")
    return args_devices[0]


SEED_MAX = 2**32 - 1  # numpy's legacy seeding and Keras' set_random_seed both take an unsigned 32-bit seed
TIMEOUT_MAX_S = 7 * 24 * 3600  # a week: longer is a typo, and an OverflowError deep in subprocess


def seed_int(text: str) -> int:
    """--seed: an integer from 0 to 2**32 - 1, refused here rather than failing every cell."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seed must be an integer, got {text!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"--seed must be between 0 and {SEED_MAX}, got {value}")
    return value


def output_path(name: str):  # noqa: ANN201 - argparse type factory
    """A file or folder to write: not empty (an empty --json used to mean 'write nothing', silently)."""
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"{name} needs a path, got an empty string")
        return text
    return parse


def model_flags(p: argparse.ArgumentParser, several_backends: bool = True, keras2: bool = True,
                api_default: str = "all the model has") -> None:
    """The model, its data and its backend: run, determinism, cost and explain."""
    p.add_argument("--api", help=f"comma-separated, from {', '.join(APIS)} (default: {api_default})")
    p.add_argument("--widths", default="256,256,256", help="hidden Dense widths (default: the seed's 256,256,256)")
    which = "comma-separated Keras backends" if several_backends else "one Keras backend"
    p.add_argument("--backend", default=None,
                   help=f"{which}, from {', '.join(BACKENDS)}"
                        + (", or tf-keras (Keras 2 on TensorFlow)" if keras2 else "") + " (default tensorflow)")
    p.add_argument("--seed", type=seed_int, default=0, help="random seed for weights and data (default 0)")
    p.add_argument("--json", metavar="PATH", type=output_path("--json"), help="write the results as one JSON document")
    p.add_argument("--model", default="seed", metavar="SPEC",
                   help="seed (default: the question's network), a zoo model (conv, text, attention), "
                        "package.module:function (a factory returning a keras.Model) or a .keras file")
    p.add_argument("--loss", default=None, help="loss for a model that comes uncompiled (default mse)")
    p.add_argument("--optimizer", default=None, help="optimizer for a model that comes uncompiled (default adam)")
    p.add_argument("--data", default=None, metavar="NPZ",
                   help="training data: an .npz with x (or x0, x1, ...) and y (or y0, ...) (default: the seed's)")


def model_choice(args: argparse.Namespace) -> ModelChoice:
    """--model and its options, as far as the parent can check them (fitbench.models.choice)."""
    from fitbench.models.choice import parse_model

    return parse_model(args.model, parse_widths(args.widths), args.loss, args.optimizer, args.data)


def decision_flags(p: argparse.ArgumentParser, alpha: float = 0.01, verdicts: bool = True,
                   compile_time: bool = True) -> None:
    """The decision's knobs (fitbench.regress.decide.DecisionSettings): alert, bisect and gate; versions with its
    own default alpha and without the gate's verdict flags (`verdicts`: --equivalence-alpha, --undecided-ok);
    --compile-threshold where asv's compile-time cells can be among them (`compile_time`: not the gate's)."""
    p.add_argument("--threshold", type=float, default=0.10,
                   help="the equivalence margin: a cell passes when its change is shown to lie within ±this; "
                        "it is also the change every cell should be able to see (default 0.10)")
    p.add_argument("--min-change", type=float, default=0.05,
                   help="a significant change smaller than this is not a regression (default 0.05)")
    if not verdicts:
        p.add_argument("--alpha", type=float, default=alpha,
                       help=f"family-wise rate of a false change (slower or faster) over all cells, Holm "
                            f"(default {alpha})")
        return
    p.add_argument("--alpha", type=float, default=alpha,
                   help=f"family-wise false-alarm rate (a cell called worse when nothing changed) over all cells "
                        f"and stages, Holm; a false 'better' has a rate of its own, at most the same (default {alpha})")
    p.add_argument("--two-sided", action="store_true",
                   help="--alpha bounds a false 'worse' and a false 'better' together, as before 2026-12-05 (the "
                        "exact test then needs one pair more before it can call a cell worse)")
    p.add_argument("--equivalence-alpha", type=float, default=0.05,
                   help="family-wise rate of calling a change of --threshold or more equivalent (default 0.05)")
    if compile_time:
        p.add_argument("--compile-threshold", type=float, default=DEFAULT_COMPILE_THRESHOLD,
                       help="the margin of the compile-time cells (asv's time_first_step, track_first_step_s: a "
                            "fresh model's first step, one compile each), never narrower than --threshold; their "
                            f"--min-change scales with it (default {DEFAULT_COMPILE_THRESHOLD})")
    p.add_argument("--undecided-ok", action="store_true",
                   help="exit 0 instead of 3 when a cell stays inconclusive (the behaviour before 2026-11-30)")


def decision_settings(args: argparse.Namespace, min_change: float | None = None) -> Any:
    from fitbench.regress.decide import DecisionSettings

    return DecisionSettings(alpha=args.alpha, threshold=args.threshold,
                            min_change=args.min_change if min_change is None else min_change,
                            equivalence_alpha=args.equivalence_alpha,
                            # a command without --compile-threshold (the gate) decides every cell at --threshold
                            compile_threshold=getattr(args, "compile_threshold", args.threshold),
                            # the alarm is one direction: alpha bounds it alone, unless asked otherwise
                            one_sided=not getattr(args, "two_sided", False)).check()


def design_flag(p: argparse.ArgumentParser) -> None:
    """--design of the commands that run an alert (alert, bisect): how the time cells are measured."""
    p.add_argument("--design", choices=("alternate", "duet", "unpaired"), default=None,
                   help="alternate (default): the time cells in pairs of warm processes, one per commit, taking "
                        "turns window by window; duet: both at once, each pinned to half the CPUs; unpaired: two "
                        "groups of asv processes (docs/alerts.md says which decides where)")


def asv_repo_flags(p: argparse.ArgumentParser, report: str, what: str) -> None:
    """--backend, --repo, --out and --json of the commands that read or run asv in a repository (alert,
    bisect, history): one name, help and check each. `report` is the folder's default name, `what` the
    report's files."""
    p.add_argument("--backend", default=None,
                   help="comma-separated KERAS_BACKEND values of asv.conf.json's matrix, or tf-keras (default: "
                        "its Keras 3 backends)")
    p.add_argument("--repo", default=".", help="the git repository with asv.conf.json (default: here)")
    p.add_argument("--out", default=report, metavar="DIR", type=output_path("--out"),
                   help=f"where {what} go (default {report})")
    p.add_argument("--json", metavar="PATH", type=output_path("--json"),
                   help="also write the JSON report here")


def crash_log(argv: Sequence[str]) -> str:
    """The traceback of an unexpected error, in a file of its own (~/.cache/fitbench/crashes): the user gets
    one line, a bug report gets the whole story."""
    import os
    import time
    import traceback

    import fitbench
    from fitbench.report.io import cache_dir

    path = os.path.join(cache_dir("crashes"), time.strftime("crash-%Y%m%dT%H%M%S") + f"-{os.getpid()}.log")
    text = (f"fitbench {fitbench.__version__}, python {sys.version.split()[0]}\nargv: {list(argv)}\n\n"
            f"{traceback.format_exc()}")
    try:
        with open(path, "w") as f:
            f.write(text)
        return path
    except OSError:  # nowhere to write: the traceback goes to stderr after all
        sys.stderr.write(text)
        return "the lines above"



def switch_help() -> str:
    """Every backend's determinism switches, for --switch's help (the first of each is its default)."""
    from fitbench.determinism.switch import SWITCHES

    return "; ".join(f"{backend} " + " | ".join(s.name for s in switches) for backend, switches in SWITCHES.items())


def switch_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--switch", metavar="BACKEND=NAME,...",
                   help="which determinism switch, per backend (default each backend's first): " + switch_help())

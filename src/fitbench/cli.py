"""The `fitbench` command: argparse wired onto the library (fitbench.measure, .determinism, .regress, .report)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, NoReturn, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fitbench import APIS, BACKENDS, DEVICES, __version__, options
from fitbench.errors import UsageError
from fitbench.measure.profiles import PROFILES, get_profile
from fitbench.model import ModelSpec, parse_widths
from fitbench.models.choice import ModelChoice
from fitbench.stacks import parse_stack, require_seed_model, stack_name

DESCRIPTION = """\
fitbench: how fast is your Keras fit loop, is its training deterministic, and did a commit change either.

  fitbench run            time model.fit cell by cell (TensorFlow, JAX, PyTorch; XLA on/off; CPU/GPU),
                          beside the framework's own raw training step and the device's peak
  fitbench determinism    are Sequential, Functional and subclassed models bit-identical, across APIs and
                          processes, and at which epoch do they part
  fitbench explain        where two trainings that should be identical part: step, layer, phase
  fitbench replay         the question fitbench started from: one optimizer shared by two models
  fitbench alert          run asv on two commits and say what got slower, process by process
  fitbench calibrate      measure this machine's between-process noise for the alert
  fitbench gate           the same decision over pytest-benchmark sessions
  fitbench asv-init       an asv suite for your own model in your own repository

Every cell runs in its own fresh process. Exit status: 0 ok, 1 found (a regression, a divergence),
2 bad input, 3 a measurement failed (for alert and gate: a benchmark failed is 2, and 3 is "undecided",
too noisy to tell), 70 fitbench itself failed. `fitbench COMMAND --help` for each; docs/reference.md for
all of it."""

EXIT_OK, EXIT_FOUND, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3
EXIT_INTERNAL = 70  # sysexits' EX_SOFTWARE: fitbench itself failed


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        sys.stderr.write(f"fitbench: error: {message}\n")
        sys.exit(EXIT_USAGE)


def _positive_int(name: str):  # noqa: ANN202 - argparse type factory
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a positive integer, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be a positive integer, got {value}")
        return value
    return parse


DEFAULT_STAGE_PROCESSES = 10  # fitbench.regress.alert.DEFAULT_PROCESSES, without importing the alert here


def decision_flags(p: argparse.ArgumentParser) -> None:
    """The decision's knobs (fitbench.regress.decide.DecisionSettings), the same for alert and gate."""
    p.add_argument("--threshold", type=float, default=0.10,
                   help="the equivalence margin: a cell passes when its change is shown to lie within ±this; "
                        "it is also the change every cell should be able to see (default 0.10)")
    p.add_argument("--min-change", type=float, default=0.05,
                   help="a significant change smaller than this is not a regression (default 0.05)")
    p.add_argument("--alpha", type=float, default=0.01,
                   help="family-wise false-alarm rate over all cells and stages (default 0.01)")
    p.add_argument("--equivalence-alpha", type=float, default=0.05,
                   help="family-wise rate of calling a change of --threshold or more equivalent (default 0.05)")


def decision_settings(args: argparse.Namespace, min_change: float | None = None) -> Any:
    from fitbench.regress.decide import DecisionSettings

    return DecisionSettings(alpha=args.alpha, threshold=args.threshold,
                            min_change=args.min_change if min_change is None else min_change,
                            equivalence_alpha=args.equivalence_alpha).check()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fitbench", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fitbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--api", help=f"comma-separated, from {', '.join(APIS)} (default: all)")
        p.add_argument("--widths", default="256,256,256", help="hidden Dense widths (default: the seed's 256,256,256)")
        p.add_argument("--backend", default=None,
                       help=f"Keras backend(s), comma-separated, from {', '.join(BACKENDS)}, or tf-keras "
                            "(Keras 2 on TensorFlow) (default tensorflow)")
        p.add_argument("--seed", type=int, default=0, help="random seed for weights and data (default 0)")
        p.add_argument("--json", metavar="PATH", help="write the results as one JSON document")
        p.add_argument("--model", default="seed", metavar="SPEC",
                       help="seed (default: the question's network), a zoo model (conv, text, attention), "
                            "package.module:function (a factory returning a keras.Model) or a .keras file")
        p.add_argument("--loss", default=None, help="loss for a model that comes uncompiled (default mse)")
        p.add_argument("--optimizer", default=None, help="optimizer for a model that comes uncompiled (default adam)")
        p.add_argument("--data", default=None, metavar="NPZ",
                       help="training data: an .npz with x (or x0, x1, ...) and y (or y0, ...)")

    run = sub.add_parser("run", help="time the fit loop, one fresh process per cell")
    common(run)
    run.add_argument("--profile", default="quick", help=f"{' | '.join(PROFILES)} (default quick)")
    run.add_argument("--jit", default="both", choices=("on", "off", "both"))
    run.add_argument("--device", default="cpu", choices=(*DEVICES, "both"))
    run.add_argument("--batch-sizes", help="comma-separated (default: the profile's)")
    run.add_argument("--variant", default="both", choices=("plain", "tuned", "both"),
                     help="plain fit, tuned fit (steps_per_execution; prefetch on tensorflow, data on the device on "
                          "jax/torch), or both (default)")
    run.add_argument("--no-seed-workload", action="store_true", help="skip the seed's 1-sample epoch cells")
    run.add_argument("--no-floor", action="store_true", help="skip the raw-step floor and the peak probe")
    run.add_argument("--plot", metavar="PATH", help="write a PNG of samples/s against batch size")
    run.add_argument("--cell-timeout", type=_positive_int("--cell-timeout"), default=1800, metavar="S")
    run.add_argument("--threads", default="default", metavar="N|default",
                     help="the frameworks' CPU thread pools per cell (default: their own; 1 gives the steadiest "
                          "numbers between processes, docs/noise.md)")
    run.add_argument("--cpus", default=None, metavar="LIST",
                     help="pin every cell's process to these CPUs, e.g. 1 or 0-1")

    det = sub.add_parser("determinism", help="bit-identity across APIs and across processes")
    common(det)
    det.add_argument("--epochs", type=_positive_int("--epochs"), default=3)
    det.add_argument("--jit", default="off", choices=("on", "off"))
    det.add_argument("--samples", type=_positive_int("--samples"), default=1,
                     help="training samples: 1 = the seed's (x, y); more = seeded synthetic data")
    det.add_argument("--batch-size", type=_positive_int("--batch-size"), default=None)
    det.add_argument("--threads", type=_positive_int("--threads"), default=2,
                     help="intra-op threads, TensorFlow and PyTorch (inter-op: 1)")
    det.add_argument("--no-op-determinism", action="store_true",
                     help="leave the backend's determinism switch off (TF op determinism, torch deterministic "
                          "algorithms, XLA's GPU flag)")
    det.add_argument("--device", default="cpu", choices=DEVICES, help="train on the CPU (default) or the first GPU")
    det.add_argument("--nudge", metavar="API", help="self-test: move one initial weight of API by one ULP")
    det.add_argument("--runs", type=_positive_int("--runs"), default=2,
                     help="separate training processes, each API compared across all of them (default 2, at least 2)")

    exp = sub.add_parser("explain", help="where two trainings that should be identical part: step, layer, phase")
    common(exp)
    exp.add_argument("--pair", default=None, choices=("apis", "runs", "nudge", "switch", "replay"),
                     help="apis: the first two --api in one process (default where the model has two); runs: "
                          "the first --api in two processes; nudge: self-test, one weight moved by one ULP; "
                          "switch: the backend's determinism switch on vs off; replay: the seed question's "
                          "shared legacy optimizer vs a fresh one")
    exp.add_argument("--epochs", type=_positive_int("--epochs"), default=3)
    exp.add_argument("--samples", type=_positive_int("--samples"), default=1,
                     help="training samples: 1 = the seed's (x, y); more = seeded synthetic data")
    exp.add_argument("--batch-size", type=_positive_int("--batch-size"), default=None)
    exp.add_argument("--no-op-determinism", action="store_true", help="leave the backend's determinism switch off")

    alert = sub.add_parser("alert", help="run asv on two commits and report what got worse, process by process")
    alert.add_argument("base", nargs="?", help="base commit (e.g. origin/main)")
    alert.add_argument("head", nargs="?", help="head commit (e.g. HEAD)")
    alert.add_argument("--bench", default=None,
                       help="regular expression of asv benchmarks (default: StepTime at batch 256 and the "
                            "determinism tracks)")
    alert.add_argument("--processes", type=_positive_int("--processes"), default=None, metavar="N",
                       help="processes per commit in each stage (default: planned from this machine's calibration, "
                            f"else {DEFAULT_STAGE_PROCESSES})")
    decision_flags(alert)
    alert.add_argument("--stages", type=int, choices=(1, 2), default=2,
                       help="2 (default): cells still inconclusive after the first processes get as many again, "
                            "alpha split across the stages; 1: one look at the full alpha")
    alert.add_argument("--max-minutes", type=float, default=30.0, metavar="M",
                       help="the second stage shrinks, or is skipped, to end within this (default 30)")
    alert.add_argument("--order-seed", type=int, default=None, metavar="N",
                       help="which commit runs first in each environment is drawn at random; this fixes the draw "
                            "(the report records the seed it used)")
    alert.add_argument("--undecided-ok", action="store_true",
                       help="exit 0 instead of 3 when a cell stays inconclusive (the alert before fitbench 0.3)")
    alert.add_argument("--factor", type=float, default=None, help=argparse.SUPPRESS)  # renamed: --min-change
    alert.add_argument("--out", default="alert-report", metavar="DIR", help="where alert.md/alert.json go")
    alert.add_argument("--repo", default=".", help="the git repository with asv.conf.json (default: here)")
    alert.add_argument("--backend", default=None,
                       help="comma-separated KERAS_BACKEND values of asv.conf.json's matrix (default: all of them)")
    alert.add_argument("--stored", action="store_true",
                       help="decide on what `asv run --record-samples` already stored for both commits (no new "
                            "run; e.g. after `asv run --interleave-rounds` over a range)")
    alert.add_argument("--from-html", metavar="DIR", help="report the regressions in a published asv report instead")

    cal = sub.add_parser("calibrate", help="one commit against itself: each cell's between-process spread here")
    cal.add_argument("rev", nargs="?", default="HEAD", help="the commit to run (default HEAD)")
    cal.add_argument("--bench", default=None, help="regular expression of asv benchmarks (default: the alert's)")
    cal.add_argument("--processes", type=_positive_int("--processes"), default=12, metavar="N",
                     help="fresh processes per cell (default 12)")
    cal.add_argument("--threshold", type=float, default=0.10, help="change to size the alert for (default 0.10)")
    cal.add_argument("--alpha", type=float, default=0.01, help="the alert's family-wise level (default 0.01)")
    cal.add_argument("--repo", default=".", help="the git repository with asv.conf.json (default: here)")
    cal.add_argument("--backend", default=None, help="comma-separated KERAS_BACKEND values (default: all)")
    cal.add_argument("--log", default="calibrate-asv.log", metavar="PATH", help="asv's log (default calibrate-asv.log)")
    cal.add_argument("--json", metavar="PATH", help="also write the calibration here")
    cal.add_argument("--no-store", action="store_true",
                     help="measure without replacing this machine's stored calibration (e.g. of a planted commit)")

    gate = sub.add_parser("gate", help="micro-benchmark gate: several pytest-benchmark sessions per side, "
                                       "decided session by session")
    gate.add_argument("--base", nargs="+", required=True, metavar="JSON", help="--benchmark-json files of the base")
    gate.add_argument("--head", nargs="+", required=True, metavar="JSON", help="--benchmark-json files of the head")
    decision_flags(gate)
    gate.add_argument("--undecided-ok", action="store_true", help="exit 0 instead of 3 when a benchmark stays "
                                                                  "inconclusive")
    gate.add_argument("--json", metavar="PATH")

    init = sub.add_parser("asv-init", help="write asv.conf.json and benchmarks/ for your model into your repository")
    init.add_argument("--model", required=True, metavar="SPEC",
                      help="your factory, package.module:function (or a zoo name to try it out)")
    init.add_argument("--repo", default=".", help="your git repository's top directory (default: here)")
    init.add_argument("--backend", default="tensorflow",
                      help="comma-separated KERAS_BACKEND values for asv's matrix (default tensorflow)")
    init.add_argument("--batch-sizes", default="256", help="comma-separated batch sizes to time (default 256)")
    init.add_argument("--loss", default=None, help="loss for a model that comes uncompiled (default mse)")
    init.add_argument("--optimizer", default=None, help="optimizer for a model that comes uncompiled (default adam)")
    init.add_argument("--fitbench", default=None, metavar="PIP-SPEC",
                      help="how asv installs fitbench (default: like this one, from its source directory or "
                           "the package index)")
    init.add_argument("--force", action="store_true", help="overwrite asv.conf.json and benchmarks/bench_model.py")
    init.add_argument("--no-check", action="store_true",
                      help="do not build the model and train one step first")

    ver = sub.add_parser("versions", help="the same cells on several released versions (keras, tensorflow, jax, "
                                          "torch), one cached environment each, side by side")
    ver.add_argument("specs", nargs="*", metavar="VERSIONS",
                     help="comma-separated columns, the first the reference: keras==3.13.*,3.15.* (a bare version "
                          "repeats the package before it), pkg==X+other==Y (several in one column), installed")
    ver.add_argument("--backend", default="tensorflow",
                     help="comma-separated, from tensorflow, jax, torch, tf-keras (default tensorflow)")
    ver.add_argument("--api", default="functional", help="comma-separated apis (default functional)")
    ver.add_argument("--widths", default="256,256,256", help="hidden Dense widths (default the seed's)")
    ver.add_argument("--model", default="seed", metavar="SPEC", help="seed (default) or a zoo model")
    ver.add_argument("--batch-sizes", default="32,256", help="comma-separated (default 32,256)")
    ver.add_argument("--jit", choices=["on", "off", "both"], default="on")
    ver.add_argument("--variant", choices=["plain", "tuned", "both"], default="plain")
    ver.add_argument("--processes", type=_positive_int("--processes"), default=6, metavar="N",
                     help="fresh processes per cell and version, interleaved A B, B A, ... (default 6)")
    ver.add_argument("--threads", default="1", metavar="N|default",
                     help="the frameworks' thread pools per cell (default 1: the steadiest between processes)")
    ver.add_argument("--alpha", type=float, default=0.05,
                     help="family-wise error rate over every cell and version, Holm (default 0.05)")
    ver.add_argument("--threshold", type=float, default=0.10,
                     help="'equivalent' where two one-sided tests put the change within ±this (default 0.10)")
    ver.add_argument("--min-change", type=float, default=0.05,
                     help="a significant change smaller than this is not called faster or slower (default 0.05)")
    ver.add_argument("--env-dir", default=None, metavar="DIR",
                     help="where the environments are cached (default $FITBENCH_ENV_CACHE or ~/.cache/fitbench/envs)")
    ver.add_argument("--seed-workload", action="store_true",
                     help="also the seed's epochs (1 sample + validation each): fit()'s fixed cost per epoch")
    ver.add_argument("--build-only", action="store_true", help="build (or find) the environments, measure nothing")
    ver.add_argument("--cell-timeout", type=_positive_int("--cell-timeout"), default=1800, metavar="S")
    ver.add_argument("--json", metavar="PATH", help="write the comparison as one JSON document")
    ver.add_argument("--from-asv", metavar="COMMIT",
                     help="decide on what asv stored for COMMIT, a column per version of asv.conf.json's matrix "
                          "`req` (no new run; e.g. after `asv run --interleave-rounds --record-samples`)")
    ver.add_argument("--repo", default=".", help="with --from-asv: the directory of asv.conf.json (default: here)")
    ver.add_argument("--bench", default=r"StepTime\.time_step",
                     help="with --from-asv: regular expression of asv benchmarks (default: StepTime)")

    for name in ("replay", "seed"):  # `seed` was the first name: "seed" is also the random seed
        replay = sub.add_parser(name, **({"help": "replay the question fitbench started from: shared vs fresh "
                                                   "optimizer"} if name == "replay" else {}))
        replay.add_argument("--epochs", type=_positive_int("--epochs"), default=200)
        replay.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        replay.add_argument("--json", metavar="PATH")
    return parser


class _Bar:
    """The engine's progress on a rich progress bar."""

    def __init__(self, progress: Progress) -> None:
        self.progress, self.task, self.looking = progress, None, None

    def looking_for_gpus(self, looking: bool) -> None:
        if looking:
            self.looking = self.progress.add_task("looking for GPUs", total=None)
        else:
            self.progress.remove_task(self.looking)

    def start(self, total: int) -> None:
        self.task = self.progress.add_task("cells", total=total)

    def step(self, description: str) -> None:
        self.progress.update(self.task, description=description)

    def advance(self) -> None:
        self.progress.advance(self.task)


def _model(args: argparse.Namespace) -> ModelChoice:
    """--model and its options, as far as the parent can check them (fitbench.models.choice)."""
    from fitbench.models.choice import parse_model

    return parse_model(args.model, parse_widths(args.widths), args.loss, args.optimizer, args.data)


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from fitbench.measure import engine
    from fitbench.measure.cells import plan_cells
    from fitbench.models.choice import check_in_child
    from fitbench.report.io import check_output_path
    from fitbench.report.tables import (
        jit_ratio_table,
        keras_ratio_table,
        keras_ratios,
        peak_lines,
        run_table,
        tuned_gain_table,
    )

    profile = get_profile(args.profile)
    backends, missing = options.backends(args.backend)
    devices = ["cpu", "gpu"] if args.device == "both" else [args.device]
    batch_sizes = options.batch_sizes(args.batch_sizes) if args.batch_sizes else list(profile.batch_sizes)
    out = check_output_path(args.json) if args.json else None
    model = _model(args)
    jits = {"on": [True], "off": [False], "both": [False, True]}[args.jit]
    cells = plan_cells(options.apis(args.api, model.apis), jits, devices, batch_sizes, backends,
                       include_seed=not args.no_seed_workload,
                       variants=["plain", "tuned"] if args.variant == "both" else [args.variant],
                       model=model.name, model_apis=model.apis)
    # a factory or file: one step, or exit 2 (plan_cells has refused tf-keras with any model but the seed)
    check_in_child(model, parse_stack(next(b for b in backends if b not in missing)).backend)
    settings = engine.RunSettings(cells=cells, profile=profile, spec=ModelSpec(widths=parse_widths(args.widths)),
                                  model=model,
                                  seed=args.seed, floor=not args.no_floor, threads=options.threads(args.threads),
                                  cpus=options.cpus(args.cpus), missing=missing, cell_timeout_s=args.cell_timeout,
                                  json_path=out)
    plot = check_output_path(args.plot) if args.plot else None
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            doc = engine.run(settings, _Bar(progress))
    except engine.RunInterrupted as stop:
        console.print(f"interrupted: {len(stop.document.records)} of {len(cells)} cells done"
                      + (f", kept in {args.json}" if args.json else ""))
        return 130
    records = [r.to_dict() for r in doc.records]
    console.print(run_table(records))
    console.print(jit_ratio_table(records))
    if any(r["variant"] == "tuned" for r in records):
        console.print(tuned_gain_table(records))
    if keras_ratios(records):
        console.print(keras_ratio_table(records))
    for line in peak_lines([p.to_dict() for p in doc.peaks]):
        console.print(line)
    if plot:
        from fitbench.report.plot import plot_throughput

        plot_throughput(records, plot)
        console.print(f"plot: {args.plot}")
    failed = engine.errors(doc)
    for r in failed:
        console.print(f"[red]error[/] in {stack_name(r.to_dict())} {r.api} jit={r.jit} {r.variant} {r.device} batch "
                      f"{r.batch_size}: {r.error}")
    return EXIT_FAILED if failed else EXIT_OK


def explain_command(args: argparse.Namespace, settings: Any, pair: dict[str, Any]) -> str:
    """The `fitbench explain` line that localises a pair `fitbench determinism` found different."""
    api_a, api_b = pair["a"].split("@")[0], pair["b"].split("@")[0]
    if settings.nudge_api in (api_a, api_b):  # the pair differs by the nudge: explain the nudge
        kind, apis = "nudge", settings.nudge_api
    else:
        kind, apis = ("apis", f"{api_a},{api_b}") if pair["scope"] == "api" else ("runs", api_a)
    parts = ["fitbench explain", f"--pair {kind}", f"--api {apis}",
             f"--backend {settings.backend}", f"--epochs {pair['first_divergent_epoch'] or 1}"]
    for flag, value, default in (("--model", args.model, "seed"), ("--widths", args.widths, "256,256,256"),
                                 ("--seed", str(args.seed), "0"), ("--samples", str(args.samples), "1"),
                                 ("--batch-size", str(settings.batch_size), str(args.samples)),
                                 ("--loss", args.loss, None), ("--optimizer", args.optimizer, None),
                                 ("--data", args.data, None)):
        if value is not None and value != default:
            parts.append(f"{flag} {value}")
    if args.no_op_determinism:
        parts.append("--no-op-determinism")
    return " ".join(parts)


def cmd_determinism(args: argparse.Namespace, console: Console) -> int:
    from fitbench.determinism.check import check_determinism
    from fitbench.determinism.settings import DeterminismSettings
    from fitbench.devices import require_gpu
    from fitbench.isolation import IsolatedError
    from fitbench.models.choice import check_in_child
    from fitbench.report.io import check_output_path, write_json_atomic
    from fitbench.report.tables import determinism_table

    backends, _ = options.backends(args.backend)
    if len(backends) != 1:
        raise UsageError("determinism checks one backend at a time: --backend tensorflow, jax, torch or tf-keras")
    stack = parse_stack(backends[0])
    model = _model(args)
    settings = DeterminismSettings(
        apis=tuple(options.apis(args.api, model.apis)), spec=ModelSpec(widths=parse_widths(args.widths)),
        model=model, epochs=args.epochs,
        jit=args.jit == "on", seed=args.seed, samples=args.samples, batch_size=args.batch_size or args.samples,
        intra_op_threads=args.threads, inter_op_threads=1, op_determinism=not args.no_op_determinism,
        nudge_api=args.nudge, runs=args.runs, backend=stack.backend, keras_major=stack.keras_major,
        device=args.device).check()
    out = check_output_path(args.json) if args.json else None
    if args.device == "gpu":
        require_gpu(settings.backend, "--device gpu")
    check_in_child(model, settings.backend)
    try:
        with console.status(f"training every API in {args.runs} fresh processes..."):
            doc = check_determinism(settings)
    except IsolatedError as exc:  # a training process failed: nothing to compare, nothing written
        sys.stderr.write(f"fitbench: determinism run failed: {exc}\n")
        return EXIT_FAILED
    if out:
        write_json_atomic(out, doc)
    console.print(determinism_table(doc))
    if doc["jit_note"]:
        console.print(f"[yellow]note:[/] {doc['jit_note']}")
    for p in doc["pairs"]:
        if not p["identical"]:
            console.print(f"[bold red]not bit-identical:[/] {p['a']} vs {p['b']}, "
                          f"first divergent epoch {p['first_divergent_epoch']}, max {p['max_ulp']} ULP")
            if settings.keras_major == 3:  # explain trains Keras 3 (its replay pair is the tf-keras one)
                console.print(f"  where they part (step, layer, phase): {explain_command(args, settings, p)}",
                              highlight=False, markup=False, soft_wrap=True)  # one line to copy
    return EXIT_OK if doc["all_identical"] else EXIT_FOUND


def cmd_replay(args: argparse.Namespace, console: Console) -> int:
    from fitbench.determinism.replay import replay_question, replay_succeeded
    from fitbench.report.io import check_output_path, write_json_atomic
    from fitbench.report.tables import replay_table

    out = check_output_path(args.json) if args.json else None
    if args.command == "seed":
        sys.stderr.write("fitbench: note: `fitbench seed` is now `fitbench replay` (the question's replay; "
                         "--seed is the random seed)\n")
    with console.status(f"replaying the question ({args.epochs} epochs, up to four processes)..."):
        doc = replay_question(epochs=args.epochs, seed=args.seed)
    if out:
        write_json_atomic(out, doc)
    console.print(replay_table(doc))
    console.print(f"Keras 3 with one shared optimizer: {doc['shared'].get('keras3_outcome')}")
    if doc["legacy_note"]:
        console.print(f"[yellow]note:[/] {doc['legacy_note']}")
    return EXIT_OK if replay_succeeded(doc) else EXIT_FAILED


def cmd_explain(args: argparse.Namespace, console: Console) -> int:
    from fitbench.determinism.explain import EXIT_DIVERGED, EXIT_IDENTICAL, ExplainSettings, explain
    from fitbench.isolation import IsolatedError
    from fitbench.models.choice import check_in_child
    from fitbench.report.io import check_output_path, write_json_atomic
    from fitbench.report.tables import explain_report

    backends, _ = options.backends(args.backend)
    if len(backends) != 1 or parse_stack(backends[0]).keras_major != 3:
        raise UsageError("explain takes one Keras 3 backend: --backend tensorflow, jax or torch "
                         "(its replay pair is the one that trains tf-keras)")
    model = _model(args)
    apis = tuple(options.apis(args.api, model.apis))
    pair = args.pair or ("apis" if len(apis) > 1 else "runs")
    settings = ExplainSettings(pair=pair, apis=apis, backend=backends[0], model=model, seed=args.seed,
                               epochs=args.epochs, samples=args.samples, batch_size=args.batch_size or args.samples,
                               op_determinism=not args.no_op_determinism).check()
    out = check_output_path(args.json) if args.json else None
    if pair == "replay":
        from fitbench.adapters import tf_keras

        if not tf_keras.available():
            raise UsageError("--pair replay needs tf-keras (the legacy optimizer): pip install 'fitbench[legacy]'")
    check_in_child(model, settings.backend)
    try:
        with console.status("training both streams step by step..."):
            doc = explain(settings)
    except IsolatedError as exc:
        sys.stderr.write(f"fitbench: explain failed: {exc}\n")
        return EXIT_FAILED
    if out:
        write_json_atomic(out, doc)
    console.print(explain_report(doc), highlight=False, markup=False, soft_wrap=True)
    return EXIT_IDENTICAL if doc["identical"] else EXIT_DIVERGED


def cmd_alert(args: argparse.Namespace, console: Console) -> int:
    from fitbench.regress import alert as alerts

    if args.from_html:
        if args.base or args.head:
            raise UsageError("--from-html takes no commits")
        status, markdown = alerts.from_html(args.from_html)
        print(markdown)
        return status
    if not (args.base and args.head):
        raise UsageError("alert needs BASE and HEAD commits (or --from-html DIR)")
    out_parent = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_parent) or not os.access(out_parent, os.W_OK):
        raise UsageError(f"cannot write {args.out}: {out_parent} is not a writable directory")
    min_change = args.min_change
    if args.factor is not None:
        if args.factor <= 1.0:
            raise UsageError(f"--factor must be greater than 1, got {args.factor}")
        sys.stderr.write("fitbench: note: --factor F is now --min-change F-1\n")
        min_change = args.factor - 1
    settings = decision_settings(args, min_change)
    request = alerts.AlertOptions(bench=args.bench or alerts.DEFAULT_BENCH,
                                  backends=tuple(options.backend_names(args.backend) or ()) or None,
                                  processes=args.processes, stages=args.stages, max_minutes=args.max_minutes,
                                  order_seed=args.order_seed, stored=args.stored,
                                  undecided_ok=args.undecided_ok).check()
    status, report = alerts.alert(args.repo, args.base, args.head, args.out, settings, request,
                                  progress=lambda line: sys.stderr.write(f"fitbench: {line}\n"))
    if report.get("error"):
        sys.stderr.write(f"fitbench: error: {report['error']}\n")
        return status
    print(alerts.render_markdown(report))
    failed = [c for c in report["comparisons"] if c["change"] == "failed"]
    for c in failed:
        sys.stderr.write(f"fitbench: benchmark failed on {' and '.join(c['failed_on'])}: {c['benchmark']} "
                         f"{c['params']}{' on ' + c['backend'] if c.get('backend') else ''}\n")
    undecided = [c for c in report["comparisons"] if c["change"] == "inconclusive"]
    if undecided and status in (alerts.EXIT_UNDECIDED, alerts.EXIT_OK):
        accepted = "accepted (--undecided-ok)" if status == alerts.EXIT_OK else "exit 3; --undecided-ok accepts it"
        sys.stderr.write(f"fitbench: undecided: {len(undecided)} cell(s) could not be decided, not a pass "
                         f"({accepted})\n")
    log = "" if args.stored else f"; asv log: {os.path.join(args.out, 'asv.log')}"
    print(f"report: {os.path.join(args.out, 'alert.md')} and alert.json{log}")
    return status


def cmd_calibrate(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from fitbench.regress import alert as alerts
    from fitbench.regress.calibration import calibrate
    from fitbench.regress.decide import DecisionSettings
    from fitbench.report.io import check_output_path, write_json_atomic
    from fitbench.report.tables import calibration_table

    DecisionSettings(alpha=args.alpha, threshold=args.threshold, min_change=0.0).check()
    out = check_output_path(args.json) if args.json else None
    check_output_path(args.log)
    try:
        with console.status(f"asv: {args.processes} processes per cell..."):
            result, path = calibrate(args.repo, args.rev, args.bench or alerts.DEFAULT_BENCH, args.processes,
                                     Path(args.log), options.backend_names(args.backend), save=not args.no_store)
    except RuntimeError as exc:
        sys.stderr.write(f"fitbench: error: {exc}\n")
        return EXIT_FAILED
    if out:
        write_json_atomic(out, result.to_dict())
    console.print(calibration_table(result, DecisionSettings(alpha=args.alpha, threshold=args.threshold)))
    console.print(f"not stored (--no-store); {path} is unchanged" if args.no_store
                  else f"stored: {path} (fitbench alert reads it on this machine)")
    return EXIT_OK


def cmd_gate(args: argparse.Namespace, console: Console) -> int:
    from fitbench.regress.gate import gate
    from fitbench.report.io import check_output_path, write_json_atomic
    from fitbench.report.tables import gate_table

    settings = decision_settings(args)
    out = check_output_path(args.json) if args.json else None
    doc = gate(args.base, args.head, settings, undecided_ok=args.undecided_ok)
    if out:
        write_json_atomic(out, doc)
    console.print(gate_table(doc))
    return doc["exit_status"]


def cmd_asv_init(args: argparse.Namespace, console: Console) -> int:
    from fitbench.regress import asvinit

    settings = asvinit.InitSettings(
        repo=args.repo, model=args.model, backends=tuple(options.backend_names(args.backend) or ()),
        batch_sizes=tuple(options.batch_sizes(args.batch_sizes)), loss=args.loss, optimizer=args.optimizer,
        fitbench_spec=args.fitbench, force=args.force, check=not args.no_check)
    if not args.no_check:
        console.print(f"checking {args.model}: build, one training step in a fresh process ...")
    written = asvinit.init(settings)
    for path in written:
        console.print(f"wrote {path}")
    bench = asvinit.alert_bench(settings.batch_sizes)
    console.print("next: commit them, then\n"
                  "  asv machine --yes && asv run --record-samples HEAD^! && asv publish   # this commit; the report\n"
                  f"  fitbench alert main HEAD --bench '{bench}'   # a pull request: slower, or not deterministic?")
    return EXIT_OK


def cmd_versions(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from fitbench.models.choice import ZOO_APIS
    from fitbench.report.io import check_output_path, write_json_atomic
    from fitbench.report.tables import version_columns_table, versions_table
    from fitbench.versions.compare import VersionsSettings, compare_versions
    from fitbench.versions.envs import READY, ensure_env
    from fitbench.versions.spec import parse_columns

    for name, value in (("--alpha", args.alpha), ("--threshold", args.threshold), ("--min-change", args.min_change)):
        if not 0 < value < 1:
            raise UsageError(f"{name} must be between 0 and 1, got {value}")
    if args.from_asv:
        return _versions_from_asv(args, console)
    columns = parse_columns(args.specs)
    backends, missing = options.backends(args.backend)
    if missing:
        raise UsageError("; ".join(missing.values()))
    options.apis(args.api, ZOO_APIS.get(args.model, APIS))
    parse_widths(args.widths)
    options.batch_sizes(args.batch_sizes)
    options.threads(args.threads)
    if args.model != "seed" and args.model not in ZOO_APIS:
        raise UsageError(f"versions times the seed network or a zoo model ({', '.join(ZOO_APIS)}), "
                         f"not {args.model!r}: a factory of yours would be imported by every version")
    require_seed_model([parse_stack(b) for b in backends], args.model)
    if args.processes < 2:
        raise UsageError(f"--processes must be at least 2 (a comparison needs a spread), got {args.processes}")
    out = check_output_path(args.json) if args.json else None
    settings = VersionsSettings(backends=",".join(backends), apis=args.api, batch_sizes=args.batch_sizes,
                                jit=args.jit, variant=args.variant, widths=args.widths, model=args.model,
                                threads=args.threads, processes=args.processes, alpha=args.alpha,
                                threshold=args.threshold, min_change=args.min_change,
                                cell_timeout_s=args.cell_timeout, seed_workload=args.seed_workload)
    root = Path(args.env_dir) if args.env_dir else None
    envs = []
    for column in columns:
        with console.status(f"environment of {column.label} ..."):
            env = ensure_env(column, root)
        console.print(f"{column.label}: {env.status}" + (" (cached)" if env.cached and not column.installed else "")
                      + (f": {env.reason}" if env.reason else ""), highlight=False, markup=False)
        envs.append(env)
    if args.build_only:
        console.print(version_columns_table([e.to_dict() for e in envs]))
        return EXIT_OK
    if sum(e.status == READY for e in envs) == 0:
        console.print(version_columns_table([e.to_dict() for e in envs]))
        sys.stderr.write("fitbench: no version could be installed: nothing to measure\n")
        return EXIT_FAILED
    doc = compare_versions(envs, settings, log=lambda line: console.print(line, highlight=False, markup=False))
    if out:
        write_json_atomic(out, doc)
    console.print(version_columns_table([{**c["env"], "rounds_run": c["rounds_run"], "failures": c["failures"]}
                                         for c in doc["columns"]]))
    console.print(versions_table(doc))
    failed = [f for c in doc["columns"] for f in c["failures"]] + [
        f"{row['cell']} ({column}): {why}" for row in doc["cells"] for column, why in row["errors"].items()]
    for line in failed:
        console.print(f"failed: {line}", highlight=False, markup=False)
    return EXIT_FAILED if failed else EXIT_OK


def _versions_from_asv(args: argparse.Namespace, console: Console) -> int:
    from fitbench.regress.asvdata import require_asv
    from fitbench.report.io import check_output_path, write_json_atomic
    from fitbench.report.tables import versions_table
    from fitbench.versions.compare import VersionsSettings, compare_asv_environments

    if args.specs:
        raise UsageError("--from-asv reads the versions from asv.conf.json's matrix: give no VERSIONS with it")
    if not os.path.exists(os.path.join(args.repo, "asv.conf.json")):
        raise UsageError(f"--repo {args.repo}: no asv.conf.json there")
    require_asv()
    out = check_output_path(args.json) if args.json else None
    settings = VersionsSettings(alpha=args.alpha, threshold=args.threshold, min_change=args.min_change)
    try:
        doc = compare_asv_environments(args.repo, args.from_asv, args.bench, settings)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not doc["cells"]:
        raise UsageError(f"asv has no per-process results of {args.bench!r} for {args.from_asv} on this machine "
                         "(run asv with --record-samples first)")
    if out:
        write_json_atomic(out, doc)
    console.print(versions_table(doc))
    return EXIT_OK


COMMANDS = {"run": cmd_run, "determinism": cmd_determinism, "replay": cmd_replay, "seed": cmd_replay,
            "alert": cmd_alert, "calibrate": cmd_calibrate, "gate": cmd_gate,
            "asv-init": cmd_asv_init, "explain": cmd_explain, "versions": cmd_versions}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A pipe or a CI log gets a wide table instead of rich's 80-column default.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    try:
        return COMMANDS[args.command](args, console)
    except UsageError as exc:
        sys.stderr.write(f"fitbench: error: {exc}\n")
        return EXIT_USAGE
    except Exception as exc:  # a bug, not a finding: never exit 1, which a CI job reads as "found"
        import traceback

        traceback.print_exc()
        sys.stderr.write(f"fitbench: internal error: {type(exc).__name__}: {exc} (exit {EXIT_INTERNAL})\n")
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())

"""`fitbench run | determinism | seed`: thin wiring of argparse onto the library functions."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from dataclasses import asdict
from typing import Any, NoReturn, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fitbench import APIS, BACKENDS, DEVICES, __version__
from fitbench.errors import UsageError
from fitbench.model import ModelSpec, check_api, parse_widths
from fitbench.profiles import PROFILES, get_profile

EXIT_OK, EXIT_FOUND, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3


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


def _int_list(text: str) -> list[int]:
    try:
        return [int(p) for p in text.split(",")]
    except ValueError:
        raise UsageError(f"--batch-sizes must be comma-separated positive integers, got {text!r}") from None


def _apis(text: str | None) -> list[str]:
    if not text:
        return list(APIS)
    apis = [check_api(a.strip()) for a in text.split(",")]
    return list(dict.fromkeys(apis))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fitbench", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fitbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--api", help=f"comma-separated, from {', '.join(APIS)} (default: all)")
        p.add_argument("--widths", default="256,256,256", help="hidden Dense widths (default: the seed's 256,256,256)")
        p.add_argument("--backend", default=None,
                       help=f"Keras backend(s), comma-separated, from {', '.join(BACKENDS)} (default tensorflow)")
        p.add_argument("--seed", type=int, default=0, help="random seed for weights and data (default 0)")
        p.add_argument("--json", metavar="PATH", help="write the results as one JSON document")

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
    run.add_argument("--cpus", default=None, metavar="LIST", help="pin every cell's process to these CPUs, e.g. 1 or 0-1")

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

    alert = sub.add_parser("alert", help="run asv on two commits and report what got worse, process by process")
    alert.add_argument("base", nargs="?", help="base commit (e.g. origin/main)")
    alert.add_argument("head", nargs="?", help="head commit (e.g. HEAD)")
    alert.add_argument("--bench", default=None,
                       help="regular expression of asv benchmarks (default: StepTime at batch 256 and the "
                            "determinism tracks)")
    alert.add_argument("--processes", type=_positive_int("--processes"), default=None, metavar="N",
                       help="processes per commit (default: enough for --threshold by this machine's calibration, "
                            "else 10)")
    alert.add_argument("--threshold", type=float, default=0.10,
                       help="the change every cell must be able to detect, else it is inconclusive (default 0.10)")
    alert.add_argument("--min-change", type=float, default=0.05,
                       help="a significant change smaller than this is not a regression (default 0.05)")
    alert.add_argument("--alpha", type=float, default=0.01,
                       help="family-wise false-alarm rate over all cells, Holm (default 0.01)")
    alert.add_argument("--factor", type=float, default=None, help=argparse.SUPPRESS)  # renamed: --min-change
    alert.add_argument("--out", default="alert-report", metavar="DIR", help="where alert.md/alert.json go")
    alert.add_argument("--repo", default=".", help="the git repository with asv.conf.json (default: here)")
    alert.add_argument("--backend", default=None,
                       help="comma-separated KERAS_BACKEND values of asv.conf.json's matrix (default: all of them)")
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
    gate.add_argument("--threshold", type=float, default=0.10)
    gate.add_argument("--min-change", type=float, default=0.05)
    gate.add_argument("--alpha", type=float, default=0.01)
    gate.add_argument("--json", metavar="PATH")

    seed = sub.add_parser("seed", help="replay the seed question: shared vs fresh optimizer")
    seed.add_argument("--epochs", type=_positive_int("--epochs"), default=200)
    seed.add_argument("--seed", type=int, default=0)
    seed.add_argument("--json", metavar="PATH")
    return parser


def _check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    return backend


def _backends(text: str | None) -> tuple[list[str], dict[str, str]]:
    """The backends asked for, and why each one that is not installed cannot run (backend -> reason).

    Nothing to run at all (every backend asked for is missing) is bad input: one line, exit 2."""
    from fitbench.runtime import backend_missing

    backends = list(dict.fromkeys(_check_backend(b.strip()) for b in (text or "tensorflow").split(",")))
    missing = {b: why for b in backends if (why := backend_missing(b))}
    if len(missing) == len(backends):
        raise UsageError("; ".join(missing.values()))
    return backends, missing


def _threads(text: str) -> int | None:
    if text == "default":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise UsageError(f"--threads must be a positive integer or 'default', got {text!r}")
    return value


def _cpus(text: str | None) -> list[int] | None:
    from fitbench.runtime import parse_cpus

    try:
        cpus = parse_cpus(text)
    except ValueError as exc:
        raise UsageError(f"--cpus: {exc}") from None
    if cpus is None:
        return None
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    if not cpus <= set(available):
        raise UsageError(f"--cpus {text}: this machine has CPUs {','.join(map(str, available))}")
    return sorted(cpus)


def _stamp() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from fitbench.isolation import IsolatedError, child_env, run_isolated
    from fitbench.report import check_output_path, jit_ratio_table, run_table, tuned_gain_table, write_json_atomic
    from fitbench.runtime import hide_gpus_env, thread_env
    from fitbench.timing import empty_record, plan_cells

    profile = get_profile(args.profile)
    spec = ModelSpec(widths=parse_widths(args.widths))
    batch_sizes = _int_list(args.batch_sizes) if args.batch_sizes else list(profile.batch_sizes)
    variants = ["plain", "tuned"] if args.variant == "both" else [args.variant]
    backends, missing = _backends(args.backend)
    devices = ["cpu", "gpu"] if args.device == "both" else [args.device]
    cells = plan_cells(_apis(args.api), {"on": [True], "off": [False], "both": [False, True]}[args.jit],
                       devices, batch_sizes, backends, include_seed=not args.no_seed_workload, variants=variants)
    threads, cpus = _threads(args.threads), _cpus(args.cpus)
    out = check_output_path(args.json) if args.json else None
    plot = check_output_path(args.plot) if args.plot else None
    doc: dict[str, Any] = {"command": "run", "fitbench_version": __version__, "started": _stamp(),
                           "threads_setting": threads, "cpus": cpus, "profile": asdict(profile), "spec": spec.to_dict(), "seed": args.seed,
                           "complete": False, "peaks": [], "records": []}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            if "gpu" in devices:  # one question per backend, not one framework start per GPU cell
                looking = progress.add_task("looking for GPUs", total=None)
                no_gpu = _gpus_unseen([b for b in backends if b not in missing], args.cell_timeout)
                progress.remove_task(looking)
            else:
                no_gpu = {}
            probes = [] if args.no_floor else [(b, d) for b in backends if b not in missing for d in devices
                                               if not (d == "gpu" and b in no_gpu)]
            task = progress.add_task("cells", total=len(cells) + len(probes))
            peaks: dict[tuple[str, str], dict[str, Any]] = {}
            if not args.no_floor:  # the GPU peak probe of a backend that sees none: skipped, not started
                doc["peaks"] += [{"backend": b, "device": "gpu", "gflops_per_s": None, "status": "skipped",
                                  "reason": why} for b, why in no_gpu.items()]
            for backend, device in probes:  # once per run and device, in its own process like a cell
                progress.update(task, description=f"{backend} {device} peak probe")
                peaks[backend, device] = _peak_probe(backend, device, args.cell_timeout)
                doc["peaks"].append(peaks[backend, device])
                progress.advance(task)
            for cell in cells:
                progress.update(task, description=cell.label())
                if cell.backend in missing:
                    record = empty_record(cell, "skipped", missing[cell.backend])
                elif cell.device == "gpu" and cell.backend in no_gpu:
                    record = empty_record(cell, "skipped", no_gpu[cell.backend])
                else:
                    peak = peaks.get((cell.backend, cell.device))
                    try:
                        record = run_isolated("fitbench.timing:measure_cell",
                                              {"cell": asdict(cell), "profile": asdict(profile),
                                               "spec": spec.to_dict(), "seed": args.seed,
                                               "peak": peak if peak and peak["status"] == "ok" else None,
                                               "raw": not args.no_floor, "threads": threads, "cpus": cpus},
                                              env=child_env({**hide_gpus_env(cell.device),
                                                             **thread_env(cell.backend, threads)}, cell.backend),
                                              timeout_s=args.cell_timeout)
                    except IsolatedError as exc:
                        record = empty_record(cell, "error", str(exc))
                doc["records"].append(record)
                if out:  # every finished cell is on disk: an interrupted run keeps them
                    write_json_atomic(out, doc)
                progress.advance(task)
    except KeyboardInterrupt:
        console.print(f"interrupted: {len(doc['records'])} of {len(cells)} cells done"
                      + (f", kept in {args.json}" if out else ""))
        return 130
    doc["complete"], doc["finished"] = True, _stamp()
    if out:
        write_json_atomic(out, doc)
    console.print(run_table(doc["records"]))
    console.print(jit_ratio_table(doc["records"]))
    if any(r.get("variant") == "tuned" for r in doc["records"]):
        console.print(tuned_gain_table(doc["records"]))
    for peak in doc["peaks"]:
        console.print(f"peak probe {peak['backend']} {peak['device']}: " + (
            f"{peak['gflops_per_s']:.1f} GFLOP/s ({peak['n']}×{peak['n']} float32 matmul, best of "
            f"{len(peak['times_s'])}) on {peak['device_name']}" if peak["status"] == "ok"
            else f"{peak['status']}: {peak.get('reason') or peak.get('error')}"))
    if plot:
        from fitbench.plot import plot_throughput

        plot_throughput(doc["records"], plot)
        console.print(f"plot: {args.plot}")
    errors = [r for r in doc["records"] if r["status"] == "error"]
    for r in errors:
        console.print(f"[red]error[/] in {r['backend']} {r['api']} jit={r['jit']} {r.get('variant', 'plain')} "
                      f"{r['device']} batch {r['batch_size']}: {r['error']}")
    return EXIT_FAILED if errors else EXIT_OK


def _gpus_unseen(backends: list[str], timeout_s: float) -> dict[str, str]:
    """{backend: why its GPU cells are skipped} for the backends that see no GPU. No NVIDIA driver: all of
    them, without starting anything; else one child process per backend asks its framework."""
    from fitbench.isolation import IsolatedError, child_env, run_isolated
    from fitbench.runtime import gpu_driver_present

    if not gpu_driver_present():
        return {b: "no GPU visible: no NVIDIA driver on this machine" for b in backends}
    unseen = {}
    for backend in backends:
        try:
            names = run_isolated("fitbench.runtime:gpu_names", {"backend": backend}, env=child_env({}, backend),
                                 timeout_s=timeout_s)
        except IsolatedError as exc:
            names, why = [], f"asking {backend} for GPUs failed: {exc}"
        else:
            why = f"no GPU visible to {backend} on this machine"
        if not names:
            unseen[backend] = why
    return unseen


def _peak_probe(backend: str, device: str, timeout_s: float) -> dict[str, Any]:
    """The device's peak matmul GFLOP/s, measured in a fresh process (skipped: no GPU there)."""
    from fitbench.isolation import IsolatedError, child_env, run_isolated
    from fitbench.runtime import hide_gpus_env

    base = {"backend": backend, "device": device, "gflops_per_s": None}
    try:
        result = run_isolated("fitbench.peak:measure_peak", {"backend": backend, "device": device},
                              env=child_env(hide_gpus_env(device), backend), timeout_s=timeout_s)
    except IsolatedError as exc:
        return {**base, "status": "error", "error": str(exc)}
    if result is None:
        return {**base, "status": "skipped", "reason": f"no GPU visible to {backend} on this machine"}
    return {**result, "status": "ok"}


def cmd_determinism(args: argparse.Namespace, console: Console) -> int:
    from fitbench.determinism import check_determinism
    from fitbench.isolation import IsolatedError
    from fitbench.report import check_output_path, determinism_table, write_json_atomic

    apis = _apis(args.api)
    if len(apis) < 1:
        raise UsageError("--api must name at least one api")
    if args.runs < 2:
        raise UsageError(f"--runs must be at least 2 (run-to-run needs two processes), got {args.runs}")
    if args.nudge is not None and check_api(args.nudge) not in apis:
        raise UsageError(f"--nudge {args.nudge} is not among the apis being checked ({', '.join(apis)})")
    spec = ModelSpec(widths=parse_widths(args.widths))
    backends, _ = _backends(args.backend)
    if len(backends) != 1:
        raise UsageError("determinism checks one backend at a time: --backend tensorflow, jax or torch")
    if args.device == "gpu":
        from fitbench.runtime import gpu_driver_present

        if not gpu_driver_present():
            raise UsageError("--device gpu: no NVIDIA GPU driver on this machine")
        unseen = _gpus_unseen(backends, 600)
        if unseen:
            raise UsageError(f"--device gpu: {unseen[backends[0]]}")
    batch_size = args.batch_size or args.samples
    out = check_output_path(args.json) if args.json else None
    try:
        with console.status(f"training every API in {args.runs} fresh processes..."):
            doc = check_determinism(apis, spec, epochs=args.epochs, jit=args.jit == "on", seed=args.seed,
                                    samples=args.samples, batch_size=batch_size, intra_op_threads=args.threads,
                                    inter_op_threads=1, op_determinism=not args.no_op_determinism,
                                    nudge_api=args.nudge, backend=backends[0], device=args.device,
                                    runs=args.runs)
    except IsolatedError as exc:  # a training process failed: nothing to compare, nothing written
        sys.stderr.write(f"fitbench: determinism run failed: {exc}\n")
        return EXIT_FAILED
    doc["fitbench_version"], doc["finished"] = __version__, _stamp()
    if out:
        write_json_atomic(out, doc)
    console.print(determinism_table(doc))
    if doc["jit_note"]:
        console.print(f"[yellow]note:[/] {doc['jit_note']}")
    for p in doc["pairs"]:
        if not p["identical"]:
            console.print(f"[bold red]not bit-identical:[/] {p['a']} vs {p['b']}, "
                          f"first divergent epoch {p['first_divergent_epoch']}, max {p['max_ulp']} ULP")
    return EXIT_OK if doc["all_identical"] else EXIT_FOUND


def cmd_seed(args: argparse.Namespace, console: Console) -> int:
    from fitbench.report import check_output_path, seed_table, write_json_atomic
    from fitbench.seedreplay import replay_seed

    out = check_output_path(args.json) if args.json else None
    with console.status(f"replaying the seed question ({args.epochs} epochs, up to four processes)..."):
        doc = replay_seed(epochs=args.epochs, seed=args.seed)
    doc["fitbench_version"], doc["finished"] = __version__, _stamp()
    if out:
        write_json_atomic(out, doc)
    console.print(seed_table(doc))
    console.print(f"Keras 3 with one shared optimizer: {doc['shared'].get('keras3_outcome')}")
    if doc["legacy_note"]:
        console.print(f"[yellow]note:[/] {doc['legacy_note']}")
    return EXIT_OK if all(r["status"] == "ok" or r["keras"] == "keras3" and r["optimizer_shared"]
                          for r in doc["runs"]) else EXIT_FAILED


def _backend_list(text: str | None) -> list[str] | None:
    backends = [b.strip() for b in text.split(",") if b.strip()] if text else None
    if text is not None and not backends:
        raise UsageError("--backend needs at least one backend")
    return backends


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
    settings = alerts.AlertSettings(alpha=args.alpha, threshold=args.threshold, min_change=min_change).check()
    status, report = alerts.alert(args.repo, args.base, args.head, args.bench or alerts.DEFAULT_BENCH, args.out,
                                  _backend_list(args.backend), settings, args.processes)
    if report.get("error"):
        sys.stderr.write(f"fitbench: error: {report['error']}\n")
        return status
    print(alerts.render_markdown(report))
    failed = [c for c in report["comparisons"] if c["change"] == "failed"]
    for c in failed:
        sys.stderr.write(f"fitbench: benchmark failed on {' and '.join(c['failed_on'])}: {c['benchmark']} "
                         f"{c['params']}{' on ' + c['backend'] if c.get('backend') else ''}\n")
    print(f"report: {os.path.join(args.out, 'alert.md')} and alert.json; asv log: {os.path.join(args.out, 'asv.log')}")
    return status


def cmd_calibrate(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from fitbench.regress import alert as alerts
    from fitbench.regress.calibration import calibrate
    from fitbench.report import calibration_table, check_output_path, write_json_atomic

    alerts.AlertSettings(alpha=args.alpha, threshold=args.threshold, min_change=0.0).check()
    out = check_output_path(args.json) if args.json else None
    check_output_path(args.log)
    try:
        with console.status(f"asv: {args.processes} processes per cell..."):
            result, path = calibrate(args.repo, args.rev, args.bench or alerts.DEFAULT_BENCH, args.processes,
                                     Path(args.log), _backend_list(args.backend), save=not args.no_store)
    except RuntimeError as exc:
        sys.stderr.write(f"fitbench: error: {exc}\n")
        return EXIT_FAILED
    if out:
        write_json_atomic(out, result.to_dict())
    console.print(calibration_table(result, args.threshold, args.alpha))
    console.print(f"not stored (--no-store); {path} is unchanged" if args.no_store
                  else f"stored: {path} (fitbench alert reads it on this machine)")
    return EXIT_OK


def cmd_gate(args: argparse.Namespace, console: Console) -> int:
    from fitbench.regress.alert import AlertSettings
    from fitbench.regress.gate import gate
    from fitbench.report import check_output_path, gate_table, write_json_atomic

    AlertSettings(alpha=args.alpha, threshold=args.threshold, min_change=args.min_change).check()
    out = check_output_path(args.json) if args.json else None
    doc = gate(args.base, args.head, args.alpha, args.threshold, args.min_change)
    if out:
        write_json_atomic(out, doc)
    console.print(gate_table(doc))
    return doc["exit_status"]


COMMANDS = {"run": cmd_run, "determinism": cmd_determinism, "seed": cmd_seed, "alert": cmd_alert,
            "calibrate": cmd_calibrate, "gate": cmd_gate}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A pipe or a CI log gets a wide table instead of rich's 80-column default.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    try:
        return COMMANDS[args.command](args, console)
    except UsageError as exc:
        sys.stderr.write(f"fitbench: error: {exc}\n")
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

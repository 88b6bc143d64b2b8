"""`fitbench versions`: the same cells on several released versions, one cached environment each."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from rich.console import Console

from fitbench import APIS
from fitbench.commands.common import EXIT_FAILED, EXIT_OK, TIMEOUT_MAX_S, decision_flags, output_path, positive_int
from fitbench.errors import UsageError
from fitbench.models.seed import parse_widths
from fitbench.processes import options
from fitbench.stacks import keras_2_beside_3, one_per_keras, parse_stack, require_model_kind

NAME = "versions"
SUMMARY = "the same cells on several released versions (keras, tensorflow, jax, torch), side by side"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    ver = sub.add_parser("versions", help="the same cells on several released versions (keras, tensorflow, jax, "
                                          "torch), one cached environment each, side by side")
    ver.add_argument("specs", nargs="*", metavar="VERSIONS",
                     help="comma-separated columns, the first the reference: keras==3.13.*,3.15.* (a bare version "
                          "repeats the package before it), pkg==X+other==Y (several in one column), installed")
    ver.add_argument("--backend", default="tensorflow",
                     help="comma-separated, from tensorflow, jax, torch, tf-keras (default tensorflow)")
    ver.add_argument("--api", default="functional", help="comma-separated apis (default functional)")
    ver.add_argument("--widths", default="256,256,256", help="hidden Dense widths (default the seed's)")
    ver.add_argument("--model", default="seed", metavar="SPEC",
                     help="seed (default), a zoo model, package.module:function (your factory, imported in every "
                          "version's environment; on tf-keras its `keras` is Keras 2) or a .keras file")
    ver.add_argument("--data", default=None, metavar="FILE.npz", help="with --model: x and y to train on")
    ver.add_argument("--batch-sizes", default="32,256", help="comma-separated (default 32,256)")
    ver.add_argument("--jit", choices=["on", "off", "both"], default="on",
                     help="XLA (TensorFlow, JAX) or torch.compile for the step (default on)")
    ver.add_argument("--variant", choices=["plain", "tuned", "both"], default="plain",
                     help="plain fit, tuned fit, or both (default plain)")
    ver.add_argument("--processes", type=positive_int("--processes"), default=6, metavar="N",
                     help="fresh processes per cell and version, interleaved A B, B A, ... (default 6)")
    ver.add_argument("--threads", default="1", metavar="N|default",
                     help="the frameworks' thread pools per cell (default 1: the steadiest between processes)")
    decision_flags(ver, alpha=0.05, verdicts=False)
    ver.add_argument("--env-dir", default=None, metavar="DIR", type=output_path("--env-dir"),
                     help="where the environments are cached (default $FITBENCH_ENV_CACHE or ~/.cache/fitbench/envs)")
    ver.add_argument("--seed-workload", action="store_true",
                     help="also the seed's epochs (1 sample + validation each): fit()'s fixed cost per epoch")
    ver.add_argument("--build-only", action="store_true", help="build (or find) the environments, measure nothing")
    ver.add_argument("--cell-timeout", type=positive_int("--cell-timeout", TIMEOUT_MAX_S), default=1800, metavar="S",
                     help="seconds a cell's process may take (default 1800)")
    ver.add_argument("--json", metavar="PATH", type=output_path("--json"),
                     help="write the comparison as one JSON document")
    ver.add_argument("--from-asv", metavar="COMMIT",
                     help="decide on what asv stored for COMMIT, a column per version of asv.conf.json's matrix "
                          "`req` (no new run; e.g. after `asv run --interleave-rounds --record-samples`)")
    ver.add_argument("--repo", default=".", help="with --from-asv: the directory of asv.conf.json (default: here)")
    ver.add_argument("--bench", default=r"StepTime\.time_step",
                     help="with --from-asv: regular expression of asv benchmarks (default: StepTime)")
    return ver


def main(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from fitbench.models.check import check_in_child
    from fitbench.models.choice import SEED, ZOO, ZOO_APIS, parse_model
    from fitbench.regress.decide import DecisionSettings
    from fitbench.report.io import check_output_path, keep_document
    from fitbench.report.tables import version_columns_table, versions_table
    from fitbench.versions.compare import VersionsSettings, compare_versions
    from fitbench.versions.envs import READY, ensure_env
    from fitbench.versions.spec import parse_columns

    DecisionSettings(alpha=args.alpha, threshold=args.threshold, min_change=args.min_change).check()  # alert's bounds
    if args.from_asv:
        return _versions_from_asv(args, console)
    columns = parse_columns(args.specs)
    backends, missing = options.backends(args.backend)
    if missing:
        raise UsageError("; ".join(missing.values()))
    model = parse_model(args.model, parse_widths(args.widths), data=args.data)
    apis = options.apis(args.api, ZOO_APIS.get(args.model, APIS)) if model.kind in (SEED, ZOO) else [model.apis[0]]
    options.batch_sizes(args.batch_sizes)
    options.threads(args.threads)
    require_model_kind([parse_stack(b) for b in backends], model.source)
    if args.processes < 2:
        raise UsageError(f"--processes must be at least 2 (a comparison needs a spread), got {args.processes}")
    out = check_output_path(args.json) if args.json else None
    # every cell against the first column, and Keras 3 against Keras 2 in each column: one Holm family, with
    # equivalence at --alpha; a budget that could decide nothing, or only equivalence, is said before the model
    # is tried or any environment built
    stacks = [parse_stack(b) for b in backends]
    cells = len(stacks) * len(apis) * len(options.batch_sizes(args.batch_sizes)) * (2 if args.jit == "both" else 1) \
        * (2 if args.variant == "both" else 1)
    ratios = cells * (len(columns) - 1) + (cells // len(stacks)) * len(columns) * keras_2_beside_3(stacks)
    check_budget(args.processes, DecisionSettings(alpha=args.alpha, threshold=args.threshold,
                                                  min_change=args.min_change), ratios, refuse=False)
    # a factory or file: one step here, once per Keras, before any environment is built (each version's run
    # checks it again in its own environment)
    for stack in one_per_keras([parse_stack(b) for b in backends]):
        check_in_child(model, stack.name, args.cell_timeout)
    settings = VersionsSettings(backends=",".join(backends), apis=",".join(apis), batch_sizes=args.batch_sizes,
                                jit=args.jit, variant=args.variant, widths=args.widths, model=model.source,
                                data=model.data,
                                threads=args.threads, processes=args.processes, alpha=args.alpha,
                                threshold=args.threshold, min_change=args.min_change,
                                cell_timeout_s=args.cell_timeout, seed_workload=args.seed_workload)
    if args.env_dir:
        from fitbench.report.io import check_output_dir

        check_output_dir(args.env_dir, "--env-dir")
    root = Path(args.env_dir) if args.env_dir else None
    envs = []
    for column in columns:
        with console.status(f"environment of {column.label} ..."):
            env = ensure_env(column, root)
        console.print(f"{column.label}: {env.status}" + (" (cached)" if env.cached and not column.installed else "")
                      + (f": {env.reason}" if env.reason else ""), highlight=False, markup=False)
        envs.append(env)
    if args.build_only:  # success only when every column can be measured
        console.print(version_columns_table([e.to_dict() for e in envs]))
        unbuilt = [e for e in envs if e.status != READY]
        for e in unbuilt:
            sys.stderr.write(f"fitbench: {e.label}: not built ({e.status}{': ' + e.reason if e.reason else ''})\n")
        return EXIT_FAILED if unbuilt else EXIT_OK
    if sum(e.status == READY for e in envs) == 0:
        console.print(version_columns_table([e.to_dict() for e in envs]))
        sys.stderr.write("fitbench: no version could be installed: nothing to measure\n")
        return EXIT_FAILED
    doc = compare_versions(envs, settings, log=lambda line: console.print(line, highlight=False, markup=False))
    if out:
        keep_document(out, doc)
    console.print(version_columns_table([{**c["env"], "rounds_run": c["rounds_run"], "failures": c["failures"]}
                                         for c in doc["columns"]]))
    console.print(versions_table(doc))
    failed = [f for c in doc["columns"] for f in c["failures"]] + [
        f"{row['cell']} ({column}): {why}" for row in doc["cells"] for column, why in row["errors"].items()]
    for line in failed:
        console.print(f"failed: {line}", highlight=False, markup=False)
    return EXIT_FAILED if failed else EXIT_OK


def check_budget(processes: int, decision: Any, ratios: int, refuse: bool) -> None:
    """Before any environment is built: when `processes` per version could decide none of `ratios` (one Holm
    family, equivalence at --alpha, as versions decides), exit 2 if `refuse` (a bisection that cannot decide
    is no search), else a note (versions still gives the numbers side by side); a note when they can only show
    equivalence."""
    from dataclasses import replace

    from fitbench.regress.decide import budget_check

    try:
        note = budget_check(processes, replace(decision, equivalence_alpha=decision.alpha), ratios)
    except UsageError as hopeless:
        if refuse:
            raise
        note = f"note: {hopeless}: the numbers side by side, no verdict"
    if note:
        sys.stderr.write(f"fitbench: {note}\n")


def _versions_from_asv(args: argparse.Namespace, console: Console) -> int:
    from fitbench.regress.asvdata import require_asv
    from fitbench.report.io import check_output_path, keep_document
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
        keep_document(out, doc)
    console.print(versions_table(doc))
    return EXIT_OK

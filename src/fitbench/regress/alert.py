"""`fitbench alert BASE HEAD`: both commits measured on this machine, the time cells in pairs of warm processes
(fitbench.regress.pairedalert) or as two groups of asv processes (fitbench.regress.unpaired), the rest through
asv; every cell decided with the process (or the pair) as the unit, the cells the first stage could not decide
given a second; and what a CI job needs: a Markdown report for the pull request, the same as JSON, and an exit
status that never calls "could not tell" a pass. With --stored, the same decision on what is already stored,
from one runner or several.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any, Callable

from fitbench.errors import UsageError
from fitbench.regress import asvdata, decide, pairedalert
from fitbench.regress.alertdoc import (
    EXIT_ERROR,
    FAILED,
    AlertDocument,
    AlertOptions,
    Comparison,
    exit_status,
)
from fitbench.regress.alertreport import write_report
from fitbench.regress.calibration import load_calibration
from fitbench.regress.decide import ALERT_SETTINGS, DecisionSettings
from fitbench.regress.pairing import ALTERNATE, UNPAIRED
from fitbench.regress.unpaired import plan_stages, unpaired_live

STORED_SOURCE = "asv's stored results (no new run)"
STORED = "stored"  # the design of a --stored alert: each cell as it was measured


def alert(repo: str, base_rev: str, head_rev: str, out_dir: str, settings: DecisionSettings = ALERT_SETTINGS,
          options: AlertOptions = AlertOptions(),
          progress: Callable[[str], None] = lambda line: None) -> tuple[int, dict[str, Any]]:
    """The whole `fitbench alert BASE HEAD`: validate, measure in one or two stages (the time cells in pairs
    unless --design unpaired, the rest through asv), decide, write alert.md/alert.json; returns the exit status
    and the document as JSON writes it. With options.stored, decide on what is already stored for both commits
    (pairs where a pairing record says so, several runners stratified by runner), without running anything."""
    started = time.monotonic()
    asvdata.require_asv()
    settings.check()
    options.check()
    repo = asvdata.repo_root(repo)
    base, head = asvdata.resolve_commit(repo, base_rev), asvdata.resolve_commit(repo, head_rev)
    if base == head:  # asv would pool one commit's processes and compare them with themselves
        raise UsageError(f"{base_rev} and {head_rev} are the same commit ({base[:10]}): nothing to compare (to "
                         "measure this machine's noise on one commit, use fitbench calibrate)")
    selected = asvdata.select_benchmarks(repo, options.bench)
    environments = asvdata.backend_environments(repo, list(options.backends) if options.backends else None)
    machine = options.machines[0] if options.machines and not options.stored else asvdata.machine_name()
    calibration = load_calibration(repo, machine)
    calibrated = calibration.log_sds() if calibration else None
    keys = [asvdata.cell_key(name, b) for name in selected for b in environments]
    stages = 1 if options.stored else options.stages
    design = STORED if options.stored else (options.design or ALTERNATE)
    runners: list[tuple[str, str]] = []
    if options.stored:  # refused before anything is written
        runners = pairedalert.stored_runners(repo, options, machine)
        plan, why = [], STORED_SOURCE
    elif design == UNPAIRED:
        plan, why = plan_stages(options.processes, calibration, keys, settings, stages, progress)
    else:
        share = options.machines[0] if options.machines else None  # a named runner: its share of a decision
        plan, why = pairedalert.plan_pairs(options.processes, keys, settings, stages, progress, share)
    seed = options.order_seed if options.order_seed is not None else random.SystemRandom().randrange(2 ** 31)
    out = Path(out_dir)
    report = AlertDocument(
        base=base, head=head, base_rev=base_rev, head_rev=head_rev, bench=options.bench, selected=selected,
        settings=settings, processes=plan[0] if plan else None, processes_planned=plan, processes_source=why,
        stages_planned=stages, max_minutes=options.max_minutes, order_seed=None if options.stored else seed,
        undecided_ok=options.undecided_ok, backends=list(environments), environments=list(environments.values()),
        machine=machine, calibration=calibration.describe() if calibration else None, asv_exit_status=None,
        stages=[], design=design, runners=[m for _, m in runners] or [machine])
    if options.stored:
        for folder in dict.fromkeys(folder for folder, _ in runners):
            note = asvdata.writer(folder)
            if note:
                progress(note)
        decided = pairedalert.stored_rows(repo, base, head, options, environments, settings, calibrated, runners,
                                          report)
        out.mkdir(parents=True, exist_ok=True)
    else:
        out.mkdir(parents=True, exist_ok=True)
        asvdata.ensure_machine(repo, machine)
        for name in ("asv.log", "workers.log", "pairs.jsonl"):
            (out / name).write_text("")
        with asvdata.writing(asvdata.asv_config(repo).results_dir, f"fitbench alert {base[:10]}..{head[:10]}"):
            if design == UNPAIRED:
                decided = unpaired_live(repo, base, head, report, keys, environments, machine, plan, settings,
                                        stages, options, seed, out, calibrated, started, progress)
            else:
                # kept as soon as the cells are decided: an interrupt while it measures where a worse cell grew
                # (minutes) keeps the verdict
                decided = pairedalert.paired_live(repo, base, head, report, selected, environments, machine, plan,
                                                  settings, stages, options, seed, out, calibrated, started,
                                                  progress, on_verdict=lambda rows, family: conclude(
                                                      report, rows, family, keys, options, out, started))
    if decided is None:
        report.finish(EXIT_ERROR)
        write_report(out_dir, report)
        return EXIT_ERROR, report.to_dict()
    status = conclude(report, *decided, keys, options, out, started)
    return status, report.to_dict()


def conclude(report: AlertDocument, rows: dict[str, Comparison], family: int, keys: list[str],
             options: AlertOptions, out: Path, started: float) -> int:
    """The verdict from the decided rows, written to alert.json and alert.md in `out`; its exit status."""
    for key in keys:  # selected, but stored nothing for it on either commit
        if key not in rows:
            name, _, label = key.rpartition(" [")
            rows[key] = Comparison(benchmark=name, params={}, unit=None, before=None, after=None,
                                   change=decide.INCONCLUSIVE if options.stored else FAILED,
                                   backend=label.rstrip("]"), failed_on=[] if options.stored else ["base", "head"],
                                   note="selected, but no stored result on either commit" if options.stored
                                   else "nothing was stored for it on either commit (see asv.log, workers.log)")
    report.comparisons = list(rows.values())
    report.tested_cells = family
    if any(c.change == FAILED for c in report.comparisons) and not options.stored:
        report.asv_errors = asvdata.errors_in_log((out / "asv.log").read_text() + (out / "workers.log").read_text())
    status = exit_status(report.comparisons, options.undecided_ok)
    report.finish(status)
    report.seconds = round(time.monotonic() - started, 1)
    write_report(str(out), report)
    return status

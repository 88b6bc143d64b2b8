"""`fitbench alert BASE HEAD`: asv runs the benchmarks on both commits, interleaved, several processes each;
fitbench decides what got worse with the process as the unit (fitbench.regress.decide), gives the cells it
could not decide a second stage of processes, and writes what a CI job needs: a Markdown report for the pull
request, the same as JSON, and an exit status that never calls "could not tell" a pass.
"""

from __future__ import annotations

import json
import math
import random
import re
import statistics
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from fitbench.errors import UsageError
from fitbench.regress import asvdata, decide
from fitbench.regress.calibration import load_calibration
from fitbench.regress.decide import DecisionSettings, Grouped

SCHEMA_VERSION = 3  # 2: one stage, "unchanged", exit 0 when undecided; 1: asv's pooled-sample verdicts

# The default set, chosen for signal: seconds per training step, per process, at batch 256 on every backend
# of the matrix (StepTime), and the determinism tracks (exact 0/1: no statistics needed). Batch 32 is on
# request (--bench 'StepTime'): docs/alerts.md has what it costs and how often it is decided here.
DEFAULT_BENCH = (r"StepTime\.time_step\(256\)|Determinism\.track_sequential_functional_identical"
                 r"|Determinism\.track_run_to_run_identical")
DEFAULT_STAGES = 2
DEFAULT_PROCESSES = 10  # stage 1's processes per commit without a calibration; stage 2 adds as many again
PLANNING_POWER = 0.9  # the plan gives every cell this power to see the threshold by the last stage
PLANNING_SPREAD_CONFIDENCE = 0.8  # ... at the 80 % upper confidence bound of its calibrated spread
MAX_TOTAL_PROCESSES = 30  # per commit and cell, over both stages
MIN_STAGE_PROCESSES = 3  # a second stage with fewer is not worth its asv start-up
DEFAULT_MAX_MINUTES = 30.0  # the whole alert; the second stage shrinks (or is skipped) to stay inside
HIGHER_IS_BETTER = re.compile(r"track_samples_per_second|_identical$|track_jit_effective|track_efficiency"
                              r"|track_pct_of_peak")
# Deterministic tracks: one value per commit says it all, compared exactly.
EXACT = re.compile(r"_identical$|_max_ulp$|track_jit_effective$")
EXIT_OK, EXIT_REGRESSION, EXIT_ERROR, EXIT_UNDECIDED = 0, 1, 2, 3
FAILED, SKIPPED = "failed", "skipped"
VERDICTS = {EXIT_OK: "pass", EXIT_REGRESSION: "regression", EXIT_ERROR: "error", EXIT_UNDECIDED: "undecided"}


@dataclass(frozen=True)
class AlertOptions:
    """What to measure and how long to try; the statistics' knobs are DecisionSettings."""

    bench: str = DEFAULT_BENCH
    backends: tuple[str, ...] | None = None  # KERAS_BACKEND values of the matrix (None: the Keras 3 ones)
    processes: int | None = None  # per commit and stage (None: from the calibration, else DEFAULT_PROCESSES)
    stages: int = DEFAULT_STAGES  # 1, or 2: the cells still inconclusive get more processes
    max_minutes: float = DEFAULT_MAX_MINUTES
    order_seed: int | None = None  # which commit runs first in each environment (None: drawn, then recorded)
    stored: bool = False  # decide on what asv already stored; no run
    undecided_ok: bool = False  # exit 0 instead of 3 when a cell stays undecided (the old behaviour)

    def check(self) -> "AlertOptions":
        if self.processes is not None and self.processes < 2:
            raise UsageError(f"--processes must be at least 2 (a spread needs two), got {self.processes}")
        if self.stored and self.processes is not None:
            raise UsageError("--processes and --stored do not go together: stored results have the processes they had")
        if self.stages not in (1, 2):
            raise UsageError(f"--stages must be 1 or 2, got {self.stages}")
        if not (math.isfinite(self.max_minutes) and self.max_minutes > 0):
            raise UsageError(f"--max-minutes must be a positive number, got {self.max_minutes}")
        return self


@dataclass
class Comparison:
    """One benchmark cell on the base and the head commit, and what the alert says of it."""

    benchmark: str
    params: dict[str, str]
    unit: str | None
    before: float | None  # median of the per-process values (or asv's value where there are none)
    after: float | None
    change: str  # worse | better | equivalent | inconclusive | failed | skipped
    method: str = ""  # how it was decided
    ratio: float | None = None  # after / before
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None
    p_value: float | None = None  # two-sided exact rank-sum, stratified by stage
    p_adjusted: float | None = None  # Holm over every tested cell of this alert, at the deciding stage
    p_equivalence: float | None = None  # TOST against ±threshold
    p_equivalence_adjusted: float | None = None
    significant: bool | None = None  # p_adjusted at or below the stage's level (a change, of whatever size)
    level: float | None = None  # family-wise level of the change test at the deciding stage (alpha / stages)
    stage: int | None = None  # the stage whose processes (all stages up to it) decided the cell
    processes_base: int | None = None  # processes that gave usable values, all stages
    processes_head: int | None = None
    processes_requested: int | None = None  # per commit, all stages this cell ran in (None: --stored)
    processes_dropped: list[int] = field(default_factory=list)  # [base, head]: a sample not finite or not > 0
    processes_missing: list[int] = field(default_factory=list)  # [base, head]: asked for, never came back
    remarks: list[str] = field(default_factory=list)  # what happened on the way (a lost stage, a bad split)
    stage_processes: list[list[int]] = field(default_factory=list)  # [[base, head] per stage]
    second_stage: str | None = None  # "ran", or why the cell got none
    between_process_cv: float | None = None  # log-SD of per-process values, the one behind detectable
    cv_source: str | None = None  # calibration | this comparison
    observed_cv: float | None = None
    min_detectable_change: float | None = None
    higher_is_better: bool = False
    failed_on: list[str] = field(default_factory=list)
    backend: str | None = None
    note: str = ""

    @property
    def label(self) -> str:
        on = f" [{self.backend}]" if self.backend else ""
        return self.benchmark + (f"({', '.join(self.params.values())})" if self.params else "") + on


@dataclass
class StageRecord:
    """One stage of a live alert: what asv was asked to run and how long it took."""

    stage: int
    processes: int  # per commit, for each cell this stage ran
    cells: list[str]  # the keys it measured
    level: float  # alpha / stages, spent by this stage
    equivalence_level: float
    seconds: float
    first_commit: dict[str, str]  # backend -> "base" or "head": which ran first there (randomised)
    asv_exit_status: dict[str, int]  # backend -> asv's exit status


@dataclass
class AlertDocument:
    """What `fitbench alert` writes to alert.json (fitbench/schemas/alert.schema.json, built from this). The
    fields marked optional are left out of the JSON while unset (a report of an alert that failed early)."""

    base: str
    head: str
    base_rev: str
    head_rev: str
    bench: str = field(metadata={"doc": "the --bench regular expression"})
    selected: list[str] = field(metadata={"doc": "the benchmarks it selected"})
    settings: DecisionSettings
    processes: int | None = field(metadata={"doc": "stage 1's processes per commit; null: decided on asv's "
                                                   "stored results (--stored)"})
    processes_planned: list[int]
    processes_source: str = field(metadata={"doc": "where the plan came from"})
    stages_planned: int
    max_minutes: float
    order_seed: int | None = field(metadata={"doc": "drew which commit runs first in each environment"})
    undecided_ok: bool
    backends: list[str]
    environments: list[str]
    machine: str
    calibration: str | None
    asv_exit_status: int | None
    stages: list[StageRecord]
    comparisons: list[Comparison] = field(default_factory=list)
    exit_status: int = EXIT_ERROR
    verdict: str = VERDICTS[EXIT_ERROR]
    tested_cells: int | None = field(default=None, metadata={"optional": True})
    seconds: float | None = field(default=None, metadata={"optional": True})
    error: str | None = field(default=None, metadata={"optional": True})
    asv_errors: list[str] | None = field(default=None, metadata={"optional": True,
                                                                 "doc": "asv's exception lines, when a cell failed"})
    command: str = "alert"
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        optional = {f.name for f in fields(self) if f.metadata.get("optional")}
        return {k: v for k, v in asdict(self).items() if not (k in optional and v is None)}

    def finish(self, status: int) -> None:
        self.exit_status, self.verdict = status, VERDICTS[status]


def _finite(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _exact(cell_b: asvdata.CellResult, cell_a: asvdata.CellResult, higher_is_better: bool) -> tuple[str, float | None]:
    before, after = cell_b.value, cell_a.value
    ratio = after / before if before else None
    if before == after:
        return decide.EQUIVALENT, ratio
    return (decide.WORSE if (after < before) == higher_is_better else decide.BETTER), ratio


def collect(before: dict[str, asvdata.CellResult], after: dict[str, asvdata.CellResult]
            ) -> tuple[dict[str, Comparison], dict[str, tuple[Grouped, Grouped]]]:
    """Every cell of either commit as a row; the failed, n/a, exact and ungroupable ones settled here, the
    rest returned with their processes for the statistics. Pure: asv's stored results in."""
    rows: dict[str, Comparison] = {}
    tested: dict[str, tuple[Grouped, Grouped]] = {}
    for key in sorted(before.keys() | after.keys()):
        b, a = before.get(key), after.get(key)
        ref = b or a
        hib = bool(HIGHER_IS_BETTER.search(ref.benchmark))
        row = Comparison(benchmark=ref.benchmark, params=ref.params, unit=ref.unit, before=None, after=None,
                         change="", higher_is_better=hib, backend=ref.backend)
        rows[key] = row
        value_b, value_a = (b.value if b else None), (a.value if a else None)
        row.failed_on = [n for n, v in (("base", value_b), ("head", value_a)) if v is None]
        if row.failed_on:
            row.before, row.after, row.change = value_b, value_a, FAILED
            continue
        if not (_finite(value_b) and _finite(value_a)):
            # asv's n/a: the benchmark raised NotImplementedError (a function this commit lacks, no GPU, ...)
            row.before, row.after = value_b, value_a
            if not _finite(value_a) and _finite(value_b):
                row.change = decide.INCONCLUSIVE  # the head can no longer run what the base ran: not a pass
                row.note = "n/a on head (it ran on base): nothing to compare"
            else:
                row.change = SKIPPED
                row.note = "n/a on base and head" if not _finite(value_a) else "n/a on base: new on head"
            continue
        if EXACT.search(ref.benchmark):
            row.before, row.after = value_b, value_a
            row.change, row.ratio = _exact(b, a, hib)
            row.method = "exact: a deterministic track, one value per commit"
            continue
        row.before, row.after = value_b, value_a
        row.ratio = value_a / value_b if value_b else None
        row.change = decide.INCONCLUSIVE
        try:
            groups = b.grouped(), a.grouped()
        except ValueError as exc:
            row.method = "samples do not split into processes"
            row.note = (f"{exc} (the layout asv stored: {b.per_process} on base, {a.per_process} on head): "
                        "a process gave fewer samples, or the samples were pooled from runs of another layout")
            continue
        if groups[0] is None or groups[1] is None:
            row.method = "no per-process values"
            row.note = "no samples kept, or a benchmark that does not record its samples per process"
            continue
        row.processes_dropped = [groups[0].dropped, groups[1].dropped]
        row.processes_base, row.processes_head = len(groups[0].values), len(groups[1].values)
        if len(groups[0].values) < 2 or len(groups[1].values) < 2:
            row.method = "fewer than 2 usable processes"
            row.note = _dropped_note(row.processes_dropped) or "fewer than 2 processes per commit"
            continue
        row.before, row.after = statistics.median(groups[0].values), statistics.median(groups[1].values)
        tested[key] = groups
    return rows, tested


def _dropped_note(dropped: list[int]) -> str:
    parts = [f"{n} {side} process{'es' if n > 1 else ''}" for side, n in zip(("base", "head"), dropped) if n]
    return ("dropped " + " and ".join(parts) + " with a sample that is not a finite time above 0") if parts else ""


def _pct(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return "∞" if math.isinf(value) else f"{100 * value:.1f} %"


def inconclusive_note(d: decide.CellDecision, settings: DecisionSettings) -> str:
    """Why a cell is inconclusive, in the reader's terms."""
    if d.min_detectable_change > settings.threshold:
        return (f"too noisy: could detect {_pct(d.min_detectable_change)} or more with {d.processes_base} "
                f"processes, not {_pct(settings.threshold)}")
    if d.significant:
        return (f"a significant {100 * (d.ratio - 1):+.1f} % change, under --min-change {_pct(settings.min_change)}, "
                f"and the interval reaches past ±{_pct(settings.threshold)}")
    return (f"neither a change nor within ±{_pct(settings.threshold)}: equivalence p (Holm) "
            f"{d.p_equivalence_adjusted:.2g} > {d.equivalence_level:.3g} (spread seen here {_pct(d.observed_log_sd)})")


def apply(row: Comparison, d: decide.CellDecision, settings: DecisionSettings) -> None:
    """A row takes a cell's decision."""
    row.change, row.ratio, row.confidence = d.change, d.ratio, d.confidence
    row.ci_low, row.ci_high = d.ci_low, d.ci_high
    row.p_value, row.p_adjusted = d.p_value, d.p_adjusted
    row.p_equivalence, row.p_equivalence_adjusted = d.p_equivalence, d.p_equivalence_adjusted
    row.significant, row.level, row.stage = d.significant, d.level, d.stage
    row.processes_base, row.processes_head = d.processes_base, d.processes_head
    row.between_process_cv, row.cv_source, row.observed_cv = d.log_sd, d.log_sd_source, d.observed_log_sd
    row.min_detectable_change = d.min_detectable_change
    row.method = ("exact rank-sum on per-process medians" + (", stratified by stage" if d.stage > 1 else "")
                  + ", Holm; equivalence by two one-sided tests")
    notes = [_dropped_note(row.processes_dropped), _missing_note(row), *row.remarks]
    if d.change == decide.INCONCLUSIVE:
        notes.append(inconclusive_note(d, settings))
    elif d.change == decide.EQUIVALENT and d.significant:
        notes.append(f"a significant {100 * (d.ratio - 1):+.1f} % change, under --min-change "
                     f"{_pct(settings.min_change)}")
    row.note = "; ".join(n for n in notes if n)


def decide_rows(rows: dict[str, Comparison], data: dict[str, tuple[decide.Values, decide.Values]],
                settings: DecisionSettings, calibrated_log_sd: dict[str, float] | None, stage: int, stages: int,
                family: int) -> dict[str, decide.CellDecision]:
    decisions = decide.decide(data, settings, calibrated_log_sd=calibrated_log_sd,
                              higher_is_better={k: rows[k].higher_is_better for k in data},
                              stage=stage, stages=stages, family=family)
    for key, d in decisions.items():
        apply(rows[key], d, settings)
    return decisions


def compare(before: dict[str, asvdata.CellResult], after: dict[str, asvdata.CellResult],
            settings: DecisionSettings = DecisionSettings(),
            calibrated_log_sd: dict[str, float] | None = None) -> list[Comparison]:
    """Every cell of either commit, decided in one stage at the full alpha. Pure: asv's stored results in."""
    rows, tested = collect(before, after)
    for key, (b, a) in tested.items():
        rows[key].stage_processes = [[len(b.values), len(a.values)]]
    decide_rows(rows, {k: (b.values, a.values) for k, (b, a) in tested.items()}, settings, calibrated_log_sd,
                stage=1, stages=1, family=len(tested))
    return list(rows.values())


def exit_status(comparisons: list[Comparison], undecided_ok: bool = False) -> int:
    """2 a benchmark failed; 1 a cell is worse; 3 a cell could not be decided (unless `undecided_ok`); 0 every
    cell decided and none worse. Skipped cells (asv's n/a on both commits, or on the base only: a benchmark new
    on the head) do not hold the gate; n/a on the head only is inconclusive."""
    if any(c.change == FAILED for c in comparisons):
        return EXIT_ERROR
    if any(c.change == decide.WORSE for c in comparisons):
        return EXIT_REGRESSION
    if any(c.change == decide.INCONCLUSIVE for c in comparisons) and not undecided_ok:
        return EXIT_UNDECIDED
    return EXIT_OK


# ---------- planning ----------

def _floor_processes(level: float) -> int:
    """The fewest processes per commit with which the exact test can reach `level` at all."""
    n = 2
    while decide.min_attainable_p(n, n) > level:
        n += 1
    return max(3, n)


def plan_stages(requested: int | None, calibration: Any, keys: list[str], settings: DecisionSettings,
                stages: int) -> tuple[list[int], str]:
    """(processes per commit for each stage, why). Asked for: that many in each stage. From this machine's
    calibration: enough in all for every calibrated cell to see the threshold with PLANNING_POWER at the last
    stage's level, planned from the 80 % upper confidence bound of its spread (the point estimate
    under-powers half the time), split in two equal stages. Else DEFAULT_PROCESSES per stage."""
    tested = [k for k in keys if not EXACT.search(k.split(" [")[0])]
    family = max(1, len(tested))
    floor = _floor_processes(settings.alpha / stages / family)
    if requested is not None:
        return [requested] * stages, f"asked for: {requested} per stage"
    cells = {c.key: c for c in (calibration.cells if calibration else [])}
    spreads = [decide.spread_upper_bound(cells[k].log_sd, len(cells[k].values), PLANNING_SPREAD_CONFIDENCE)
               for k in tested if k in cells and math.isfinite(cells[k].log_sd)]
    if not spreads:
        return [max(floor, DEFAULT_PROCESSES)] * stages, "default: no calibration on this machine (fitbench calibrate)"
    total = decide.processes_for(spreads, settings.threshold, settings.alpha / stages, power=PLANNING_POWER,
                                 floor=floor, limit=MAX_TOTAL_PROCESSES, family=family)
    why = (f"from this machine's calibration: {_pct(settings.threshold)} seen with {100 * PLANNING_POWER:.0f} % power "
           f"at the {100 * PLANNING_SPREAD_CONFIDENCE:.0f} % upper bound of each cell's spread")
    if total is None:
        total = MAX_TOTAL_PROCESSES
        why = f"calibration: a cell would need more than {MAX_TOTAL_PROCESSES} processes to see " \
              f"{_pct(settings.threshold)}; capped"
    if stages == 1:
        return [total], why
    first = max(floor, -(-total // 2))
    return [first, max(MIN_STAGE_PROCESSES, total - first)], why + ", in two stages"


# ---------- the live alert ----------

STORED_SOURCE = "asv's stored results (no new run)"


class _Runner:
    """Runs asv stage by stage, one call per environment, each with its own randomised first commit."""

    def __init__(self, repo: str, base: str, head: str, environments: dict[str, str], log: Path, seed: int,
                 progress: Callable[[str], None]) -> None:
        self.repo, self.base, self.head, self.environments, self.log = repo, base, head, environments, log
        self.rng = random.Random(seed)
        self.progress = progress
        self.seconds_per_round: dict[str, float] = {}  # backend -> stage 1's wall time ÷ its rounds

    def stage(self, number: int, processes: int, regexes: dict[str, list[str]], settings: DecisionSettings,
              stages: int, cells: list[str]) -> StageRecord:
        """`processes` more per commit for the cells `regexes` select in each backend's environment."""
        first: dict[str, str] = {}
        statuses: dict[str, int] = {}
        started = time.monotonic()
        for backend, patterns in regexes.items():
            base_first = self.rng.random() < 0.5
            first[backend] = "base" if base_first else "head"
            leader, other = (self.base, self.head) if base_first else (self.head, self.base)
            # asv runs the first round in reverse order when its number of rounds (the most any selected
            # benchmark has: StepTime's, unless another selected one has more) is even
            order = [leader, other] if processes % 2 else [other, leader]
            t0 = time.monotonic()
            self.progress(f"stage {number}: asv, {processes} processes per commit on {backend} "
                          f"({len(patterns) if number > 1 else 'every'} selected cell(s), {first[backend]} first; "
                          f"log: {self.log})")
            statuses[backend] = asvdata.run_asv(self.repo, order, patterns, processes, self.log,
                                                [self.environments[backend]], append=number > 1)
            if number == 1:
                self.seconds_per_round[backend] = (time.monotonic() - t0) / processes
        return StageRecord(stage=number, processes=processes, cells=cells, level=settings.alpha / stages,
                           equivalence_level=settings.equivalence_alpha / stages,
                           seconds=round(time.monotonic() - started, 1), first_commit=first, asv_exit_status=statuses)


def _stage_two_samples(first: list[float] | None, now: list[float] | None) -> tuple[list[float], bool]:
    """The samples stage 2 added after stage 1's (asv appends); (those, True) when asv no longer holds stage
    1's samples in front (a failed round makes asv drop what it had): then all it holds is stage 2's."""
    now = list(now or [])
    first = list(first or [])
    if now[:len(first)] == first:
        return now[len(first):], False
    return now, True


def alert(repo: str, base_rev: str, head_rev: str, out_dir: str, settings: DecisionSettings = DecisionSettings(),
          options: AlertOptions = AlertOptions(),
          progress: Callable[[str], None] = lambda line: None) -> tuple[int, dict[str, Any]]:
    """The whole `fitbench alert BASE HEAD`: validate, run asv in one or two stages, decide, write
    alert.md/alert.json; returns the exit status and the document as JSON writes it. With options.stored,
    decide on what `asv run --record-samples` already stored for both commits (one stage, the processes that
    run had), without running asv."""
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
    machine = asvdata.machine_name()
    calibration = load_calibration(repo, machine)
    calibrated = calibration.log_sds() if calibration else None
    keys = [asvdata.cell_key(name, b) for name in selected for b in environments]
    stages = 1 if options.stored else options.stages
    if options.stored:
        plan, why = [], STORED_SOURCE
    else:
        plan, why = plan_stages(options.processes, calibration, keys, settings, stages)
    seed = options.order_seed if options.order_seed is not None else random.SystemRandom().randrange(2 ** 31)
    if options.stored:  # refused before anything is written
        asvdata.require_layout(asvdata.read_results(repo, [base, head], options.bench, list(environments.values()),
                                                    machine), "alert --stored")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "asv.log"
    report = AlertDocument(
        base=base, head=head, base_rev=base_rev, head_rev=head_rev, bench=options.bench, selected=selected,
        settings=settings, processes=plan[0] if plan else None, processes_planned=plan, processes_source=why,
        stages_planned=stages, max_minutes=options.max_minutes, order_seed=None if options.stored else seed,
        undecided_ok=options.undecided_ok, backends=list(environments), environments=list(environments.values()),
        machine=machine, calibration=calibration.describe() if calibration else None, asv_exit_status=None,
        stages=[])
    runner = None
    if not options.stored:
        log.write_text("")
        runner = _Runner(repo, base, head, environments, log, seed, progress)
        record = runner.stage(1, plan[0], {b: [options.bench] for b in environments}, settings, stages, keys)
        report.stages.append(record)
        report.asv_exit_status = max(record.asv_exit_status.values(), default=0)
    results = asvdata.read_results(repo, [base, head], options.bench, list(environments.values()), machine)
    before, after = results[base], results[head]
    if not before or not after:
        missing = " and ".join(name for name, cells in (("base", before), ("head", after)) if not cells)
        where = "run `asv run --record-samples` on it first" if options.stored else "see asv.log"
        report.error = f"asv recorded no results for the {missing} commit ({where})"
        report.finish(EXIT_ERROR)
        write_report(out_dir, report)
        return EXIT_ERROR, report.to_dict()
    rows, tested = collect(before, after)
    for key in keys:  # selected, but asv stored nothing for it on either commit
        if key not in rows:
            name, _, label = key.rpartition(" [")
            rows[key] = Comparison(benchmark=name, params={}, unit=None, before=None, after=None,
                                   change=decide.INCONCLUSIVE if options.stored else FAILED,
                                   backend=label.rstrip("]"), failed_on=[] if options.stored else ["base", "head"],
                                   note="selected, but no stored result on either commit" if options.stored
                                   else "asv stored no result on either commit (see asv.log)")
    family = len(tested)
    for key, (b, a) in tested.items():
        rows[key].stage_processes = [[len(b.values), len(a.values)]]
        if plan:
            rows[key].processes_requested = plan[0]
            _note_lost(rows[key], b, a, plan[0])
    first_stage = decide_rows(rows, {k: (b.values, a.values) for k, (b, a) in tested.items()}, settings,
                              calibrated, stage=1, stages=stages, family=family)
    if stages == 2 and runner is not None:
        _second_stage(runner, report, rows, tested, first_stage, before, after, plan, settings, calibrated, family,
                      options, started)
    report.comparisons = list(rows.values())
    report.tested_cells = family
    if any(c.change == FAILED for c in report.comparisons) and not options.stored:
        report.asv_errors = asvdata.errors_in_log(log.read_text())
    status = exit_status(report.comparisons, options.undecided_ok)
    report.finish(status)
    report.seconds = round(time.monotonic() - started, 1)
    write_report(out_dir, report)
    return status, report.to_dict()


def _note_lost(row: Comparison, b: Grouped, a: Grouped, requested: int) -> None:
    """A round that failed loses processes in asv (it keeps only the samples after the failure): count them."""
    missing = [max(0, requested - g.measured) for g in (b, a)]
    row.processes_missing = [x + y for x, y in zip(row.processes_missing or [0, 0], missing)]
    row.note = "; ".join(filter(None, [row.note, _missing_note(row)]))


def _missing_note(row: Comparison) -> str:
    if not any(row.processes_missing or []):
        return ""
    parts = [f"{side} {n}" for side, n in zip(("base", "head"), row.processes_missing) if n]
    return (f"processes missing ({', '.join(parts)}): a round failed (asv drops its samples and logs nothing of "
            "a failed round before the last one)")


def _second_stage(runner: _Runner, report: AlertDocument, rows: dict[str, Comparison],
                  tested: dict[str, tuple[Grouped, Grouped]], first_stage: dict[str, decide.CellDecision],
                  before: dict[str, asvdata.CellResult], after: dict[str, asvdata.CellResult], plan: list[int],
                  settings: DecisionSettings, calibrated: dict[str, float] | None, family: int,
                  options: AlertOptions, started: float) -> None:
    """More processes for the cells stage 1 left inconclusive, unless futile or out of time; decided at the
    second stage's level over the whole family, each stage a stratum."""
    undecided = [k for k, d in first_stage.items() if d.change == decide.INCONCLUSIVE]
    for key in first_stage:
        rows[key].second_stage = "decided at stage 1" if key not in undecided else None
    if not undecided:
        return
    backend_of = {name: backend for backend, name in runner.environments.items()}

    def backend(key: str) -> str:
        return backend_of[before[key].env_name]

    # Time: stage 1's seconds per round in each environment, scaled to the share of its cells that go on (an
    # overestimate by stage 1's one-off costs: a build, the determinism tracks; installs recur every round).
    budget = options.max_minutes * 60 - (time.monotonic() - started)
    per_round = 0.0
    for label in {backend(k) for k in undecided}:
        mine = [k for k in tested if backend(k) == label]
        going = [k for k in undecided if backend(k) == label]
        per_round += runner.seconds_per_round.get(label, 0.0) * len(going) / max(1, len(mine))
    more = plan[1]
    if per_round > 0 and more * per_round > budget:
        more = int(budget // per_round)
    if more < MIN_STAGE_PROCESSES:
        for key in undecided:
            rows[key].second_stage = (f"no time left: stage 1 took {(time.monotonic() - started) / 60:.1f} min of "
                                      f"--max-minutes {options.max_minutes:g}")
        return
    going = []
    for key in undecided:
        why = decide.worth_continuing(first_stage[key], more, settings, family, stages=2)
        if why:
            rows[key].second_stage = why
        else:
            going.append(key)
    if not going:
        return
    regexes: dict[str, list[str]] = {}
    for key in going:
        regexes.setdefault(backend(key), []).append("^" + re.escape(before[key].name) + "$")
    runner.progress(f"stage 1 left {len(going)} cell(s) inconclusive: a second stage of {more} processes per commit")
    record = runner.stage(2, more, regexes, settings, 2, going)
    report.stages.append(record)
    report.asv_exit_status = max([report.asv_exit_status or 0, *record.asv_exit_status.values()])
    environments = sorted({before[k].env_name for k in going})
    now = asvdata.read_results(runner.repo, [runner.base, runner.head], options.bench, environments)
    data: dict[str, tuple[decide.Values, decide.Values]] = {}
    for key in going:
        row = rows[key]
        b_now, a_now = now[runner.base].get(key), now[runner.head].get(key)
        if b_now is None or a_now is None or b_now.value is None or a_now.value is None:
            row.change, row.failed_on = FAILED, [n for n, c in (("base", b_now), ("head", a_now))
                                                 if c is None or c.value is None]
            row.second_stage = "ran, and failed"
            row.note = "; ".join(filter(None, [row.note, "the second stage's processes failed; see asv.log"]))
            continue
        strata = []
        for first_cell, cell in ((before[key], b_now), (after[key], a_now)):
            extra, lost = _stage_two_samples(first_cell.samples, cell.samples)
            if lost:
                row.remarks.append("asv dropped stage 1's samples after a failed round: stage 1 is kept from the "
                                   "first read")
            try:
                strata.append(decide.group_processes(extra, cell.per_process or first_cell.per_process or 0))
                # 0 samples per process: split_processes raises, the cell is marked, never regrouped
            except ValueError as exc:
                row.remarks.append(f"stage 2: {exc}")
                strata.append(None)
        if strata[0] is None or strata[1] is None:
            row.second_stage = "ran, but its samples could not be cut into processes"
            row.note = "; ".join(filter(None, [row.note, *row.remarks]))
            continue  # stays as stage 1 decided it, with the remarks
        row.second_stage = "ran"
        row.processes_requested = plan[0] + more
        b1, a1 = tested[key]
        b2, a2 = strata
        row.stage_processes.append([len(b2.values), len(a2.values)])
        row.processes_dropped = [b1.dropped + b2.dropped, a1.dropped + a2.dropped]
        _note_lost(row, b2, a2, more)
        data[key] = ([b1.values, b2.values], [a1.values, a2.values])
        row.before, row.after = statistics.median(b1.values + b2.values), statistics.median(a1.values + a2.values)
    if data:
        decide_rows(rows, data, settings, calibrated, stage=2, stages=2, family=family)


# ---------- rendering ----------

def human(value: float | None, unit: str | None) -> str:
    if value is None:
        return "failed"
    if not _finite(value):
        return "n/a"
    if unit == "seconds":
        for scale, suffix in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
            if abs(value) >= scale:
                return f"{value / scale:.3g} {suffix}"
        return f"{value * 1e9:.3g} ns"
    if unit == "bytes":
        return f"{value / 2**20:.1f} MiB"
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return f"{text} {unit}" if unit and unit != "unit" else text


def _params_text(params: dict[str, str], backend: str | None = None) -> str:
    pairs = ([("backend", backend)] if backend else []) + [(k, v.strip("'")) for k, v in params.items()]
    return ", ".join(f"{k}={v}" for k, v in pairs) or "–"


def _ratio_text(c: Comparison) -> str:
    if c.ratio is None:
        return "–"
    if c.ci_low is None:
        return f"{c.ratio:.3f}×"
    high = "∞" if c.ci_high is None or math.isinf(c.ci_high) else f"{c.ci_high:.3f}"
    return f"{c.ratio:.3f}× [{c.ci_low:.3f}, {high}]"


def headline(report: dict[str, Any]) -> str:
    """The report's first line: the verdict a CI job acts on, and its exit status."""
    rows = report.get("comparisons", [])
    status = report.get("exit_status")
    if status is None:
        status = exit_status([Comparison(**c) for c in rows], bool(report.get("undecided_ok")))
    counts = {k: sum(1 for c in rows if c["change"] == k) for k in (decide.WORSE, decide.INCONCLUSIVE, FAILED)}
    span = f"`{report['base'][:10]}` → `{report['head'][:10]}`"
    if report.get("error"):
        return f"## fitbench alert {span}: **error**: {report['error']} (exit {status})"
    if status == EXIT_ERROR:
        worse = f", and {counts[decide.WORSE]} cell(s) worse" if counts[decide.WORSE] else ""
        return f"## fitbench alert {span}: **error**: {counts[FAILED]} benchmark(s) failed{worse} (exit 2)"
    if status == EXIT_REGRESSION:
        return f"## fitbench alert {span}: **regression**: {counts[decide.WORSE]} of {len(rows)} cells worse (exit 1)"
    if counts[decide.INCONCLUSIVE]:
        tail = ("accepted with --undecided-ok (exit 0)" if status == EXIT_OK
                else "not a pass (exit 3)")
        return (f"## fitbench alert {span}: **undecided**: {counts[decide.INCONCLUSIVE]} of {len(rows)} cells could "
                f"not be decided; {tail}")
    return f"## fitbench alert {span}: **pass**: every cell decided, none worse (exit 0)"


def render_markdown(report: dict[str, Any]) -> str:
    """A pull-request comment: the verdict first, then one row per cell with its statistics; failures listed."""
    rows = [Comparison(**c) for c in report["comparisons"]]
    kinds = (decide.WORSE, decide.BETTER, FAILED, decide.INCONCLUSIVE, decide.EQUIVALENT, SKIPPED)
    by = {k: [c for c in rows if c.change == k] for k in kinds}
    s = report.get("settings", {})
    stages = report.get("stages") or []
    if stages:
        ran = "; ".join(f"stage {st['stage']}: {st['processes']} processes per commit for {len(st['cells'])} cell(s) "
                        f"at family-wise α {st['level']:.3g}, {st['seconds'] / 60:.1f} min" for st in stages)
        how = (f"Processes per commit planned {' + '.join(map(str, report.get('processes_planned', [])))} "
               f"({report.get('processes_source', '')}); {ran}. Base and head interleaved, which runs first drawn "
               f"per environment (seed {report.get('order_seed')})")
    else:
        how = "Processes per commit: what asv stored (no new run; the `processes` column)"
    lines = [headline(report), "",
             f"**{len(by['worse'])} worse**, {len(by['better'])} better, {len(by['equivalent'])} equivalent "
             f"(within ±{_pct(s.get('threshold'))}), {len(by['inconclusive'])} inconclusive, {len(by['failed'])} "
             f"failed, {len(by['skipped'])} n/a.", "",
             how + "; each process's median is one observation. A cell is worse when the exact rank-sum test on "
             f"those is significant at family-wise α={s.get('alpha')} (Holm over {report.get('tested_cells', '?')} "
             f"cells, split across {report.get('stages_planned', 1)} stage(s)) and the change is at least "
             f"{_pct(s.get('min_change'))}; equivalent when two one-sided tests put it within "
             f"±{_pct(s.get('threshold'))} at family-wise α={s.get('equivalence_alpha')}; else inconclusive, which "
             f"is not a pass. Benchmarks `{report['bench']}`; "
             f"{'backends ' + ', '.join(report['backends']) + '; ' if report.get('backends') else ''}"
             f"machine `{report.get('machine', '?')}`; calibration: {report.get('calibration') or 'none'}.", ""]

    def table(title: str, items: list[Comparison]) -> None:
        if not items:
            return
        lines.extend([f"### {title}", "",
                      "| benchmark | parameters | before | after | ratio [95 % CI] | processes (stage) | "
                      "between-process CV | detectable | p (Holm) | p equivalent (Holm) | note |",
                      "|---|---|---|---|---|---|---|---|---|---|---|"])
        for c in items:
            procs = f"{c.processes_base} + {c.processes_head} ({c.stage})" if c.processes_base else "–"
            cv = f"{_pct(c.between_process_cv)} ({c.cv_source})" if c.between_process_cv is not None else "–"
            p = f"{c.p_adjusted:.2g}" if c.p_adjusted is not None else "–"
            p_eq = f"{c.p_equivalence_adjusted:.2g}" if c.p_equivalence_adjusted is not None else "–"
            note = "; ".join(filter(None, [c.note or c.method,
                                           (f"no second stage: {c.second_stage}" if c.second_stage
                                            and c.second_stage not in ("ran", "decided at stage 1") else "")]))
            lines.append(f"| `{c.benchmark}` | {_params_text(c.params, c.backend)} | {human(c.before, c.unit)} | "
                         f"{human(c.after, c.unit)} | {_ratio_text(c)} | {procs} | {cv} | "
                         f"{_pct(c.min_detectable_change)} | {p} | {p_eq} | {note} |")
        lines.append("")

    table("Regressions", by["worse"])
    table("Improvements", by["better"])
    if by["failed"]:
        lines.extend(["### Failed (the benchmark errored)", ""])
        lines.extend(f"- `{c.label}`: failed on {' and '.join(c.failed_on)}" for c in by["failed"])
        lines.append("")
        if report.get("asv_errors"):
            lines.extend(["asv's log (`asv.log` beside this report) shows:", ""])
            lines.extend(f"- `{e}`" for e in report["asv_errors"])
            lines.append("")
    table("Inconclusive (could not decide: not a pass)", by["inconclusive"])
    if by["equivalent"]:
        lines.extend(["<details><summary>Equivalent</summary>", ""])
        table(f"Equivalent (within ±{_pct(s.get('threshold'))}; the exact tracks: identical)", by["equivalent"])
        lines.extend(["</details>", ""])
    return "\n".join(lines)


def write_report(out_dir: str, report: AlertDocument) -> tuple[Path, Path]:
    """alert.json and alert.md in `out_dir`."""
    from fitbench.report.io import keep_document, keep_markdown

    out = Path(out_dir)
    md = out / "alert.md"
    doc = report.to_dict()
    kept = Path(keep_document(str(out / "alert.json"), doc))  # a full disk: kept elsewhere, and said where
    keep_markdown(md, render_markdown(doc))  # the same Markdown goes to stdout
    return md, kept


# ---------- from a published report ----------

def from_html(html_dir: str) -> tuple[int, str]:
    """Markdown for the regressions `asv publish` found along the history (regressions.json)."""
    path = Path(html_dir) / "regressions.json"
    index_path = Path(html_dir) / "index.json"
    if not path.is_file() or not index_path.is_file():
        raise UsageError(f"{html_dir} has no regressions.json and index.json: run `asv publish` first")
    regressions = json.loads(path.read_text()).get("regressions", [])
    rev_to_hash = json.loads(index_path.read_text()).get("revision_to_hash", {})

    def commit(rev: int | None) -> str:
        return rev_to_hash.get(str(rev), "?")[:10] if rev is not None else "?"

    lines = [f"## fitbench: regressions in the published asv report ({html_dir})", "",
             f"**{len(regressions)} regression(s)** found by `asv publish` along the history "
             "(thresholds: `regressions_thresholds` in asv.conf.json). The same list is in `regressions.xml`, "
             "an Atom feed a feed reader or chat integration can follow.", ""]
    if regressions:
        lines += ["| benchmark | parameters | commit range | before | after | ratio | latest vs best |",
                  "|---|---|---|---|---|---|---|"]
        for name, _graph, params, _j, last, best, jumps in regressions:
            param_text = ", ".join(f"{k}={v}" for k, v in params.items()) or "–"
            for rev_a, rev_b, value_before, value_after in jumps:
                span = f"`{commit(rev_b)}`" if rev_a is None else f"`{commit(rev_a)}`..`{commit(rev_b)}`"
                ratio = value_after / value_before if value_before else math.inf
                lines.append(f"| `{name}` | {param_text} | {span} | {value_before:.4g} | {value_after:.4g} | "
                             f"{ratio:.2f}× | {last:.4g} vs {best:.4g} |")
    return (EXIT_REGRESSION if regressions else EXIT_OK), "\n".join(lines) + "\n"


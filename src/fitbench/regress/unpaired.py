"""The unpaired design of `fitbench alert`: asv's own processes, base and head interleaved (A B B A ...), each
process's median one observation, decided by the exact rank-sum test (fitbench.regress.decide), in one or two
stages; and what every design shares with it: a row per stored cell (`collect`), a row taking a decision.
"""

from __future__ import annotations

import math
import random
import re
import statistics
import time
from pathlib import Path
from typing import Any, Callable

from fitbench.regress import asvdata, decide, ranksum
from fitbench.regress.alertdoc import (
    EXACT,
    FAILED,
    HIGHER_IS_BETTER,
    SKIPPED,
    AlertDocument,
    AlertOptions,
    Comparison,
    StageRecord,
    finite,
    is_exact,
    pct,
)
from fitbench.regress.decide import DecisionSettings, Grouped

DEFAULT_PROCESSES = 10  # stage 1's processes per commit without a calibration; stage 2 adds as many again
PLANNING_POWER = 0.9  # the plan gives every cell this power to see the threshold by the last stage
PLANNING_SPREAD_CONFIDENCE = 0.8  # ... at the 80 % upper confidence bound of its calibrated spread
MAX_TOTAL_PROCESSES = 30  # per commit and cell, over both stages
MIN_STAGE_PROCESSES = 3  # a second stage with fewer is not worth its asv start-up


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
        if not (finite(value_b) and finite(value_a)):
            # asv's n/a: the benchmark raised NotImplementedError (a function this commit lacks, no GPU, ...)
            row.before, row.after = value_b, value_a
            if not finite(value_a) and finite(value_b):
                row.change = decide.INCONCLUSIVE  # the head can no longer run what the base ran: not a pass
                row.note = "n/a on head (it ran on base): nothing to compare"
            else:
                row.change = SKIPPED
                row.note = "n/a on base and head" if not finite(value_a) else "n/a on base: new on head"
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


def inconclusive_note(d: decide.CellDecision, settings: DecisionSettings) -> str:
    """Why a cell is inconclusive, in the reader's terms (at the cell's own margin: d.threshold)."""
    unit = "processes" if d.design == decide.UNPAIRED else "pairs"
    if math.isinf(d.min_detectable_change):
        return (f"with {d.processes_base} {unit} the exact test cannot reach Holm's level for a change at all, "
                f"however large; more {unit} are needed, or fewer cells")
    if d.min_detectable_change > d.threshold:
        return (f"too noisy: could detect {pct(d.min_detectable_change)} or more with {d.processes_base} "
                f"{unit}, not {pct(d.threshold)}")
    if d.significant:
        return (f"a significant {100 * (d.ratio - 1):+.1f} % change, under --min-change {pct(d.min_change)}, "
                f"and the interval reaches past ±{pct(d.threshold)}")
    return (f"neither a change nor within ±{pct(d.threshold)}: equivalence p (Holm) "
            f"{d.p_equivalence_adjusted:.2g} > {d.equivalence_level:.3g} (spread seen here {pct(d.observed_log_sd)})")


def margin_note(d: decide.CellDecision, settings: DecisionSettings) -> str:
    """A cell decided at a margin of its own says so (compile time: --compile-threshold)."""
    if d.threshold == settings.threshold:
        return ""
    return (f"compile time: decided at ±{pct(d.threshold)} (--compile-threshold), --min-change "
            f"{pct(d.min_change)}; the other cells at ±{pct(settings.threshold)}")


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
    row.design = d.design
    row.threshold = d.threshold
    row.method = ("exact rank-sum on per-process medians" + (", stratified by stage" if d.stage > 1 else "")
                  + ", Holm; equivalence by two one-sided tests")
    notes = [_dropped_note(row.processes_dropped), _missing_note(row), *row.remarks, margin_note(d, settings)]
    if d.change == decide.INCONCLUSIVE:
        notes.append(inconclusive_note(d, settings))
    elif d.change == decide.EQUIVALENT and d.significant:
        notes.append(f"a significant {100 * (d.ratio - 1):+.1f} % change, under --min-change "
                     f"{pct(d.min_change)}")
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


# ---------- planning ----------

def _floor_processes(level: float) -> int:
    """The fewest processes per commit with which the exact test can reach `level` at all."""
    n = 2
    while ranksum.min_attainable_p(n, n) > level:
        n += 1
    return max(3, n)


def plan_stages(requested: int | None, calibration: Any, keys: list[str], settings: DecisionSettings,
                stages: int, progress: Callable[[str], None] = lambda line: None) -> tuple[list[int], str]:
    """(processes per commit for each stage, why). Asked for: that many in each stage. From this machine's
    calibration: enough in all for every calibrated cell to see the threshold with PLANNING_POWER at the last
    stage's level, planned from the 80 % upper confidence bound of its spread (the point estimate
    under-powers half the time), split in two equal stages. Else DEFAULT_PROCESSES per stage."""
    tested = [k for k in keys if not is_exact(k)]
    family = max(1, len(tested))
    floor = _floor_processes(settings.change_level(stages) / family)
    if requested is not None:
        note = decide.budget_check(requested, settings, family, stages)
        if note:
            progress(note)
        return [requested] * stages, f"asked for: {requested} per stage"
    cells = {c.key: c for c in (calibration.cells if calibration else [])}
    # a cell with a wider margin of its own (compile time) needs less: on the log scale what a test sees is the
    # margin over the spread, so its spread counts scaled by the two margins' ratio
    spreads = [decide.spread_upper_bound(cells[k].log_sd, len(cells[k].values), PLANNING_SPREAD_CONFIDENCE)
               * math.log1p(settings.threshold) / math.log1p(settings.for_cell(k).threshold)
               for k in tested if k in cells and math.isfinite(cells[k].log_sd)]
    if not spreads:
        return [max(floor, DEFAULT_PROCESSES)] * stages, "default: no calibration on this machine (fitbench calibrate)"
    total = ranksum.processes_for(spreads, settings.threshold, settings.change_level(stages), power=PLANNING_POWER,
                                 floor=floor, limit=MAX_TOTAL_PROCESSES, family=family)
    why = (f"from this machine's calibration: {pct(settings.threshold)} seen with {100 * PLANNING_POWER:.0f} % power "
           f"at the {100 * PLANNING_SPREAD_CONFIDENCE:.0f} % upper bound of each cell's spread")
    if total is None:
        total = MAX_TOTAL_PROCESSES
        why = f"calibration: a cell would need more than {MAX_TOTAL_PROCESSES} processes to see " \
              f"{pct(settings.threshold)}; capped"
    if stages == 1:
        return [total], why
    first = max(floor, -(-total // 2))
    return [first, max(MIN_STAGE_PROCESSES, total - first)], why + ", in two stages"


class Runner:
    """Runs asv stage by stage, one call per environment, each with its own randomised first commit."""

    def __init__(self, repo: str, base: str, head: str, environments: dict[str, str], log: Path, seed: int,
                 progress: Callable[[str], None], machine: str | None = None) -> None:
        self.repo, self.base, self.head, self.environments, self.log = repo, base, head, environments, log
        self.machine = machine
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
            which = f"{len(patterns)} cell{'s' if len(patterns) != 1 else ''}" if number > 1 else "every selected cell"
            self.progress(f"stage {number}: asv, {processes} process{'es' if processes != 1 else ''} per commit on "
                          f"{backend} ({which}, {first[backend]} first; log: {self.log})")
            statuses[backend] = asvdata.run_asv(self.repo, order, patterns, processes, self.log,
                                                [self.environments[backend]], append=number > 1,
                                                machine=self.machine, progress=self.progress)
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


def unpaired_live(repo: str, base: str, head: str, report: AlertDocument, keys: list[str],
                   environments: dict[str, str], machine: str, plan: list[int], settings: DecisionSettings,
                   stages: int, options: AlertOptions, seed: int, out: Path, calibrated: dict[str, float] | None,
                   started: float, progress: Callable[[str], None]) -> tuple[dict[str, Comparison], int] | None:
    """The unpaired design: asv's own processes, base and head interleaved, in one or two stages."""
    runner = Runner(repo, base, head, environments, out / "asv.log", seed, progress, machine)
    record = runner.stage(1, plan[0], {b: [options.bench] for b in environments}, settings, stages, keys)
    report.stages.append(record)
    report.asv_exit_status = max(record.asv_exit_status.values(), default=0)
    results = asvdata.read_results(repo, [base, head], options.bench, list(environments.values()), machine)
    before, after = results[base], results[head]
    if not before or not after:
        missing = " and ".join(name for name, cells in (("base", before), ("head", after)) if not cells)
        report.error = f"asv recorded no results for the {missing} commit (see asv.log)"
        return None
    rows, tested = collect(before, after)
    family = len(tested)
    for key, (b, a) in tested.items():
        rows[key].stage_processes = [[len(b.values), len(a.values)]]
        rows[key].processes_requested = plan[0]
        _note_lost(rows[key], b, a, plan[0])
    first_stage = decide_rows(rows, {k: (b.values, a.values) for k, (b, a) in tested.items()}, settings,
                              calibrated, stage=1, stages=stages, family=family)
    if stages == 2:
        _second_stage(runner, report, rows, tested, first_stage, before, after, plan, settings, calibrated, family,
                      options, started)
    return rows, family


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


def going_on(keys: list[str], why_not: Callable[[str], str | None], rows: dict[str, Comparison]) -> list[str]:
    """The cells that get a second stage; every other row says why not (futile, out of time)."""
    going = []
    for key in keys:
        why = why_not(key)
        if why:
            rows[key].second_stage = why
        else:
            going.append(key)
    return going


def _second_stage(runner: Runner, report: AlertDocument, rows: dict[str, Comparison],
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
    going = going_on(undecided, lambda key: decide.worth_continuing(first_stage[key], more, settings, family,
                                                                    stages=2), rows)
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
    now = asvdata.read_results(runner.repo, [runner.base, runner.head], options.bench, environments, runner.machine)
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

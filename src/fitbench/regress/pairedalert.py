"""`fitbench alert` in pairs: the plan, the stages and the decision of the paired design, and the decision on
stored results from one runner or several (each runner compared only with itself).

The default alert measures every time cell that can be paired (fitbench.regress.pairedstage) in pairs of
warm workers, one per commit, and the rest (the exact determinism tracks) through asv as before; every cell
is then decided in one Holm family: pairs by the exact signed-rank test on their log ratios
(fitbench.regress.signedrank), the rest as fitbench.regress.decide does. docs/alerts.md has the design
and what it measured.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from fitbench.errors import UsageError
from fitbench.regress import asvdata, asvpairs, decide, localize, pairedstage, signedrank
from fitbench.regress.alertdoc import FAILED, AlertDocument, AlertOptions, Comparison, StageRecord, is_exact
from fitbench.regress.decide import DecisionSettings, Evidence, Grouped
from fitbench.regress.pairedstage import GROUP_SEP, CellPairsRead, PairedCell, StageOutcome
from fitbench.regress.pairing import ALTERNATE
from fitbench.regress.unpaired import Runner, apply, collect, going_on, inconclusive_note, margin_note

DEFAULT_PAIRS = 12  # per stage: above the exact test's floor for a few cells at the default alpha (plan_pairs)
PAIR_MARGIN = 1  # a pair above that floor: one pair against the trend still leaves a decision
MIN_STAGE_PAIRS = 4


def _family(keys: list[str]) -> int:
    return max(1, len([k for k in keys if not is_exact(k)]))


def equivalence_floor(level: float) -> int:
    """The fewest pairs with which a one-sided exact signed-rank test can reach `level` (1 / 2**n)."""
    n = 1
    while 0.5 ** n > level:
        n += 1
    return n


def change_floor(keys: list[str], settings: DecisionSettings, stages: int) -> int:
    """The fewest pairs with which the exact test can call a cell worse at stage 1's first Holm level."""
    return signedrank.min_pairs(settings.change_level(stages) / _family(keys))


def plan_pairs(requested: int | None, keys: list[str], settings: DecisionSettings, stages: int,
               progress: Callable[[str], None], share: str | None = None) -> tuple[list[int], str]:
    """(pairs per stage, why). The exact signed-rank test cannot give p below 2 / 2**n with n pairs, and
    Holm's first level is change_level(stages) / cells: the default is that floor plus PAIR_MARGIN (at least
    DEFAULT_PAIRS). Asked for fewer: one line before anything runs when no cell could be called worse, and
    refused (UsageError) when no cell could be decided at all — unless these pairs are one runner's `share`
    of a decision over several (--machine): the floor is then over all the runners' pairs together."""
    family = _family(keys)
    floor = change_floor(keys, settings, stages)
    equivalence_at = equivalence_floor(settings.equivalence_alpha / stages / family)
    if requested is None:
        pairs = max(DEFAULT_PAIRS, floor + PAIR_MARGIN)
        floor_text = (f"{floor} pairs are the fewest in which the exact test can reach alpha {settings.alpha:g} over "
                      f"{family} cell(s) and {stages} stage(s)")
        return [pairs] * stages, (f"default: {floor_text}; {PAIR_MARGIN} more" if pairs == floor + PAIR_MARGIN else
                                  f"default: {DEFAULT_PAIRS} pairs a stage, at least ({floor_text})")
    total = requested * stages
    if share and total < floor:
        progress(f"note: --processes {requested} on runner {share}: alone these "
                 f"pairs can decide nothing or only equivalence; as this runner's share of a decision over "
                 f"several (`fitbench alert BASE HEAD --stored --results …`), the runners' pairs together need "
                 f"{floor} per cell to call one worse (alpha {settings.alpha:g} over {family} cell(s) and {stages} "
                 f"stage(s))")
        return [requested] * stages, f"asked for: {requested} pairs per stage, this runner's share"
    if total < equivalence_at:
        raise UsageError(f"--processes {requested}: with {total} pair(s) per cell the exact test can decide "
                         f"nothing at these levels ({family} cell(s), {stages} stage(s)): it needs at least "
                         f"{-(-equivalence_at // stages)} per stage to show a cell equivalent and "
                         f"{-(-floor // stages)} to call one worse")
    if total < floor:  # not even both stages' pairs together can reach the level: this alert never exits 1
        progress(f"note: --processes {requested}: with {total} pairs per cell over {stages} stage(s) no cell can "
                 f"be called worse, however much slower: this alert can only say equivalent or undecided; "
                 f"{-(-floor // stages)} a stage could (alpha {settings.alpha:g} over {family} cell(s) and {stages} "
                 f"stage(s))")
    elif requested < floor:
        progress(f"note: --processes {requested}: with {requested} pairs a stage no cell can be called worse at "
                 f"stage 1, only once stage 2 has run ({total} pairs); {floor} a stage could at stage 1 (alpha "
                 f"{settings.alpha:g} over {family} cell(s) and {stages} stage(s))")
    return [requested] * stages, f"asked for: {requested} pairs per stage"


def evidence_of(tested: dict[str, tuple[Grouped, Grouped]], reads: dict[str, CellPairsRead],
                settings: DecisionSettings, calibrated: dict[str, float] | None,
                strata_of: Callable[[str], Any] | None = None) -> dict[str, Evidence]:
    """Each tested cell's evidence: its pairs where it has them, else its two groups of processes (one list
    per runner from `strata_of`, when several runners are combined)."""
    out = {}
    for key, (b, a) in tested.items():
        read = reads.get(key)
        mine = settings.for_cell(key)  # a compile-time cell's margin is its own
        if read is not None and read.ratios:
            out[key] = signedrank.paired_evidence(read.strata(), mine, read.designs[0])
        elif strata_of is not None:
            base, head = strata_of(key)
            out[key] = decide.unpaired_evidence(base, head, mine, (calibrated or {}).get(key))
        else:
            out[key] = decide.unpaired_evidence(b.values, a.values, mine, (calibrated or {}).get(key))
    return out


def apply_decisions(rows: dict[str, Comparison], decisions: dict[str, decide.CellDecision],
                    reads: dict[str, CellPairsRead], settings: DecisionSettings) -> None:
    for key, d in decisions.items():
        row = rows[key]
        apply(row, d, settings)
        row.design = d.design
        read = reads.get(key)
        if read is None or not read.ratios:
            continue
        row.pairs = d.processes_base
        row.pair_cv = d.observed_log_sd
        row.between_process_cv = read.process_log_sd()
        row.observed_cv, row.cv_source = d.observed_log_sd, "per pair"
        row.runners = dict(Counter(read.runners))
        row.before, row.after = statistics.median(read.base_values), statistics.median(read.head_values)
        by_runner = " and ".join(f"{n} on {r}" for r, n in row.runners.items()) if len(row.runners) > 1 else ""
        runners = f", stratified by runner: {by_runner}" if by_runner else ""
        row.method = (f"exact signed-rank on the per-pair ratios ({d.design}{runners}), Holm; equivalence by two "
                      "one-sided tests")
        notes = [*row.remarks, margin_note(d, settings),
                 inconclusive_note(d, settings) if d.change == decide.INCONCLUSIVE else ""]
        if d.change == decide.EQUIVALENT and d.significant:
            notes.append(f"a significant {100 * (d.ratio - 1):+.1f} % change, under --min-change")
        if read.failed:
            notes.append(f"{len(read.failed)} pair(s) failed and were dropped ({read.failed[0]})")
        if read.dropped:
            notes.append(f"{read.dropped} pair(s) dropped: a window that is not a finite time above 0")
        row.note = "; ".join(n for n in notes if n)


def group_label(group: str, backend_of: dict[str, str], groups: list[str]) -> str:
    """A group as the report names it: its backend, and its benchmark class where the backend has several."""
    env_name, _, holder = group.partition(GROUP_SEP)
    several = sum(g.partition(GROUP_SEP)[0] == env_name for g in groups) > 1
    return backend_of.get(env_name, env_name) + (f" {holder.rsplit('.', 1)[-1]}" if several else "")


def _stage_record(stage: StageOutcome, pairs: int, cells: list[PairedCell], settings: DecisionSettings,
                  stages: int, backend_of: dict[str, str]) -> StageRecord:
    groups = list(stage.pairs)
    label = {g: group_label(g, backend_of, groups) for g in groups}
    first = {label[g]: ", ".join(f"{side} {n}" for side, n in sorted(Counter(p.first for p in ps).items()))
             for g, ps in stage.pairs.items()}
    designs = [p.design for ps in stage.pairs.values() for p in ps]
    return StageRecord(stage=stage.stage, processes=pairs, cells=[c.key for c in cells],
                       level=settings.alpha / stages,  # the stage's share of alpha (a direction's, when one-sided)
                       equivalence_level=settings.equivalence_alpha / stages, seconds=stage.seconds,
                       first_commit=first, asv_exit_status={}, design=designs[0] if designs else ALTERNATE,
                       pairs_failed={label[g]: len(stage.failed(g)) for g in groups},
                       # the pairs that ran: a stage of fast failures would promise a second stage time it lacks
                       seconds_per_pair={label[g]: round(statistics.median(p.seconds for p in ps if not p.failed), 1)
                                         for g, ps in stage.pairs.items() if any(not p.failed for p in ps)})


def read_back(repo: str, base: str, head: str, bench: str, envs: list[str], runners: list[tuple[str, str]]
              ) -> tuple[dict[str, dict[str, asvdata.CellResult]], dict[str, CellPairsRead], dict[str, list[str]]]:
    """Every runner's stored cells ({runner: {key: cell}} for base and head merged below), their pairs where a
    pairing record covers them, and the keys whose record no longer matches (measured again since)."""
    per_runner: dict[str, dict[str, asvdata.CellResult]] = {}
    reads: dict[str, CellPairsRead] = {}
    stale: dict[str, list[str]] = {}
    for results_dir, machine in runners:
        stored = asvdata.read_results(repo, [base, head], bench, envs, machine, results_dir)
        label = machine if len(runners) == 1 or [m for _, m in runners].count(machine) == 1 else \
            f"{machine}@{results_dir}"
        per_runner[label + "\0base"] = stored[base]
        per_runner[label + "\0head"] = stored[head]
        record = asvpairs.load_pairing(results_dir, machine, base, head)
        both = {k: (stored[base][k], stored[head][k]) for k in stored[base].keys() & stored[head].keys()}
        mine: dict[str, CellPairsRead] = {}
        for key in pairedstage.read_pairs(both, record, mine):
            stale.setdefault(key, []).append(label)
        for key, read in mine.items():
            read.runners = [label] * len(read.runners)
            merged = reads.setdefault(key, CellPairsRead())
            for name in ("ratios", "stages", "runners", "designs", "base_values", "head_values", "failed"):
                getattr(merged, name).extend(getattr(read, name))
            merged.dropped += read.dropped
            merged.planned_stages = max(merged.planned_stages, read.planned_stages)
    return per_runner, reads, stale


def paired_live(repo: str, base: str, head: str, report: AlertDocument, selected: list[str],
                environments: dict[str, str], machine: str, plan: list[int], settings: DecisionSettings,
                stages: int, options: AlertOptions, seed: int, out: Path, calibrated: dict[str, float] | None,
                started: float, progress: Callable[[str], None],
                on_verdict: Callable[[dict[str, Comparison], int], Any] = lambda rows, family: None
                ) -> tuple[dict[str, Comparison], int] | None:
    """Stage 1 (and 2) of pairs for the pairable cells, one asv stage for the rest; the rows decided, or None
    when asv stored nothing for one of the commits (report.error says so). `on_verdict(rows, family)` is called
    once the cells are decided, before where a worse cell grew is measured (minutes)."""
    log = out / "asv.log"
    design = report.design
    progress(f"preparing both commits' builds in {len(environments)} environment(s) for pairs (asv; log: {log})")
    sides = asvpairs.prepare(repo, list(environments.values()), [base, head], log, progress=progress)
    info = asvpairs.benchmark_info(repo)
    paired = pairedstage.pairable(selected, environments, info)
    rest = [n for n in selected if not any(asvdata.cell_key(n, b) in paired for b in environments)]
    backend_of = {env_name: backend for backend, env_name in environments.items()}
    cells = list(paired.values())
    if any(site is None for env in sides.values() for site in env.sites.values()):
        report.remarks.append("asv builds no wheel for this project (its build_command is empty): both sides of "
                              "a pair import what the environment holds; only ASV_COMMIT tells them apart")
    if rest:  # first: the pairs then know how much of --max-minutes is theirs
        runner = Runner(repo, base, head, environments, log, seed, progress, machine)
        regexes = {b: ["^" + re.escape(n) + "$" for n in rest] for b in environments}
        record = runner.stage(1, 1, regexes, settings, stages,  # one process each: none of these is timed per process
                              [asvdata.cell_key(n, b) for n in rest for b in environments])
        report.stages.append(record)
        report.asv_exit_status = max(record.asv_exit_status.values(), default=0)
    if cells:
        progress(f"stage 1: {plan[0]} pairs ({design}) of {len(cells)} cell(s) in {len(sides)} environment(s)")
        # --max-minutes may cut the margin pair(s), never below what can call a cell worse at stage 1's level
        floor = change_floor([asvdata.cell_key(n, b) for n in selected for b in environments], settings, stages)
        stage1 = pairedstage.run_stage(repo, base, head, sides, cells, plan[0], design, 1, seed, out, 0, {},
                                       progress, labels=backend_of, deadline=started + options.max_minutes * 60,
                                       min_pairs=min(plan[0], floor))
        pairedstage.store_stage(repo, machine, machine, base, head, cells, stage1, append=False, stages=stages)
        report.stages.append(_stage_record(stage1, plan[0], cells, settings, stages, backend_of))
        report.remarks.extend(stage1.notes)
    runners = [(asvdata.asv_config(repo).results_dir, machine)]
    per_runner, reads, _ = read_back(repo, base, head, options.bench, list(environments.values()), runners)
    before, after = per_runner[machine + "\0base"], per_runner[machine + "\0head"]
    if not before or not after:
        missing = " and ".join(name for name, got in (("base", before), ("head", after)) if not got)
        report.error = f"asv recorded no results for the {missing} commit (see asv.log and workers.log)"
        return None
    rows, tested = collect(before, after)
    for key, read in reads.items():  # a cell no pair could measure is failed: say why
        if key in rows and rows[key].change == FAILED and read.failed:
            rows[key].note = "; ".join(filter(None, [rows[key].note, f"every pair failed ({read.failed[-1]})"]))
    for key, (b, a) in tested.items():
        rows[key].stage_processes = [[len(b.values), len(a.values)]]
        rows[key].processes_requested = plan[0]
    family = len(tested)
    first = decide.conclude(evidence_of(tested, reads, settings, calibrated), settings,
                            {k: rows[k].higher_is_better for k in tested}, stage=1, stages=stages, family=family)
    apply_decisions(rows, first, reads, settings)
    for key in first:
        rows[key].second_stage = "decided at stage 1" if first[key].change != decide.INCONCLUSIVE else None
    if stages == 2 and cells:
        _second_stage(repo, base, head, report, rows, tested, first, paired, reads, sides, plan, settings,
                      calibrated, family, options, seed, out, started, machine, backend_of, progress)
    for key, row in rows.items():
        if key in paired and row.pairs is not None:
            lost = (row.processes_requested or plan[0]) - row.pairs
            row.processes_missing = [lost, lost] if lost > 0 else []
    worse = [(key, paired[key], row.backend or "") for key, row in rows.items()
             if row.change == decide.WORSE and key in paired]
    on_verdict(rows, family)
    ratios = {key: (rows[key].ratio, rows[key].ci_low) for key, _, _ in worse}
    _where_it_grew(repo, base, head, report, worse, ratios, sides, info, seed + 2, out,
                   started + options.max_minutes * 60, options, backend_of, progress)
    return rows, family


def _where_it_grew(repo: str, base: str, head: str, report: AlertDocument, worse: list[tuple[str, PairedCell, str]],
                   ratios: dict[str, tuple[float | None, float | None]], sides: dict[str, Any],
                   info: dict[str, dict[str, Any]], seed: int, out: Path, deadline: float, options: AlertOptions,
                   backend_of: dict[str, str], progress: Callable[[str], None]) -> None:
    """The phases of the worse StepTime cells (fitbench.regress.localize), after the verdict is reached: what
    goes wrong here is a remark, never a lost verdict. Not on a runner's share of a decision over several
    (--machine): its report is not the one a reader sees."""
    if not options.localize or not any(w[1].benchmark.endswith(localize.LOCALIZED) for w in worse):
        return
    if options.machines:
        report.remarks.append("where it grew: not measured on a runner's share (--machine); `fitbench alert BASE "
                              "HEAD --bench CELL` on one machine measures it")
        return
    per_pair = {r.stage: r.seconds_per_pair for r in report.stages if r.design != decide.UNPAIRED}.get(1, {})
    try:
        report.localized, remarks = localize.where_it_grew(
            repo, base, head, worse, sides, info, seed, out, deadline, progress, backend_of, per_pair, ratios)
    except Exception as exc:  # descriptive: the cells' verdict stands
        remarks = [f"where it grew: not measured, it failed: {type(exc).__name__}: {exc}"]
    report.remarks.extend(remarks)


def where_it_grew_between(repo: str, base: str, head: str, worse_keys: list[str], per_pair: dict[str, float],
                          max_minutes: float, seed: int, out: Path, progress: Callable[[str], None],
                          ratios: dict[str, tuple[float | None, float | None]] | None = None
                          ) -> tuple[list[localize.Localization], list[str]]:
    """Where the worse StepTime cells `worse_keys` (asvdata.cell_key) of an alert already run between `base` and
    `head` grew, measured alone in pairs of StepPhases (bisect's culprit against GOOD: its steps do without),
    the largest change first (localize.where_it_grew). `per_pair`: that alert's stage-1 seconds per pair by
    group label, for the estimate of a round; the pairs keep to `max_minutes` from now; `ratios`: each cell's
    ratio at `head` and its interval's lower end. Returns the localizations and the remarks (why none was
    measured)."""
    deadline = time.monotonic() + max_minutes * 60
    keys = [k for k in worse_keys if k.rsplit(" [", 1)[0].partition("(")[0].endswith(localize.LOCALIZED)]
    if not keys:
        return [], []
    by_backend: dict[str, list[str]] = {}
    for key in keys:
        name, _, backend = key.rpartition(" [")
        by_backend.setdefault(backend.rstrip("]"), []).append(name)
    environments = asvdata.backend_environments(repo, list(by_backend))
    info = asvpairs.benchmark_info(repo)  # what the alert's steps discovered: nothing to build if it cannot pair
    worse = []
    for backend, names in by_backend.items():
        paired = pairedstage.pairable(names, {backend: environments[backend]}, info)
        worse += [(key, cell, backend) for key, cell in paired.items() if key in keys]
    if not worse:
        return [], ["where it grew: not measured, the suite has no StepTime cell to pair at these parameters"]
    if not any(name.endswith(localize.STEP_PHASES) for name in info):
        return localize.where_it_grew(repo, base, head, worse, {}, info, seed, out, deadline, progress)  # says why
    out.mkdir(parents=True, exist_ok=True)
    backend_of = {env_name: backend for backend, env_name in environments.items()}
    with asvdata.writing(asvdata.asv_config(repo).results_dir, f"fitbench: where {head[:10]} grew"):
        progress(f"where it grew: preparing both commits' builds in {len(environments)} environment(s) (asv)")
        sides = asvpairs.prepare(repo, list(environments.values()), [base, head], out / "asv.log",
                                 progress=progress)
        return localize.where_it_grew(repo, base, head, worse, sides, info, seed, out, deadline, progress,
                                      backend_of, per_pair, ratios)


def futile(d: decide.CellDecision, more: int, settings: DecisionSettings, family: int, stages: int = 2,
           power: float = 0.8) -> str | None:
    """Why an inconclusive paired cell gets no second stage of `more` pairs (None: it does): even the lowest
    per-pair spread its pairs allow (90 % lower bound) would leave the threshold out of reach."""
    optimistic = decide.spread_lower_bound(d.observed_log_sd, d.processes_base)
    if not math.isfinite(optimistic):
        return None
    reach = signedrank.min_detectable_change(optimistic, [d.processes_base + more],
                                             settings.change_level(stages) / family, power)
    if reach > d.threshold:  # the cell's own margin
        return (f"futile: at the per-pair spread seen here (lowest plausible {100 * optimistic:.1f} %) "
                f"{d.processes_base + more} pairs could detect "
                f"{'∞' if math.isinf(reach) else f'{100 * reach:.1f} %'}, not {100 * d.threshold:.1f} %")
    return None


def _second_stage(repo: str, base: str, head: str, report: AlertDocument, rows: dict[str, Comparison],
                  tested: dict[str, tuple[Grouped, Grouped]], first: dict[str, decide.CellDecision],
                  paired: dict[str, PairedCell], reads: dict[str, CellPairsRead], sides: dict[str, Any],
                  plan: list[int], settings: DecisionSettings, calibrated: dict[str, float] | None, family: int,
                  options: AlertOptions, seed: int, out: Path, started: float, machine: str,
                  backend_of: dict[str, str], progress: Callable[[str], None]) -> None:
    """More pairs for the paired cells stage 1 left inconclusive, unless futile or out of time; decided over
    all their pairs at the second stage's level, over the whole family."""
    undecided = [k for k, d in first.items() if d.change == decide.INCONCLUSIVE]
    for key in undecided:
        if key not in paired or key not in reads:
            rows[key].second_stage = "not a paired cell: one asv stage"
    undecided = [k for k in undecided if k in paired and k in reads]
    if not undecided:
        return
    per_pair = {r.stage: r.seconds_per_pair for r in report.stages if r.design != decide.UNPAIRED}.get(1, {})
    groups = sorted({paired[k].group for k in undecided})
    everyone = sorted({c.group for c in paired.values()})
    seconds = sum(per_pair.get(group_label(g, backend_of, everyone), 0.0) for g in groups)
    budget = options.max_minutes * 60 - (time.monotonic() - started)
    more = plan[1] if seconds <= 0 else min(plan[1], int(budget // seconds))
    if more < MIN_STAGE_PAIRS:
        for key in undecided:
            rows[key].second_stage = (f"no time left: stage 1 took {(time.monotonic() - started) / 60:.1f} min of "
                                      f"--max-minutes {options.max_minutes:g}")
        return
    going = going_on(undecided, lambda key: futile(first[key], more, settings, family), rows)
    if not going:
        return
    envs = sorted({paired[k].env_name for k in going})
    cells = [paired[k] for k in going]
    progress(f"stage 1 left {len(going)} cell(s) inconclusive: a second stage of {more} pairs")
    stage2 = pairedstage.run_stage(repo, base, head, sides, cells, more, report.design, 2, seed + 1, out, plan[0],
                                   {}, progress, labels=backend_of, deadline=started + options.max_minutes * 60)
    pairedstage.store_stage(repo, machine, machine, base, head, cells, stage2, append=True, stages=2)
    report.stages.append(_stage_record(stage2, more, cells, settings, 2, backend_of))
    runners = [(asvdata.asv_config(repo).results_dir, machine)]
    _, now, _ = read_back(repo, base, head, options.bench, envs, runners)
    evidence = {k: signedrank.paired_evidence(now[k].strata(), settings.for_cell(k), report.design) for k in going
                if k in now and now[k].ratios}
    decisions = decide.conclude(evidence, settings, {k: rows[k].higher_is_better for k in evidence}, stage=2,
                                stages=2, family=family)
    apply_decisions(rows, decisions, now, settings)
    for key in going:
        rows[key].second_stage = "ran"
        rows[key].processes_requested = plan[0] + more
        read = now.get(key)
        if read:
            rows[key].stage_processes = [[read.stages.count(1)] * 2, [read.stages.count(2)] * 2]


# ---------- stored results, one runner or several ----------

def stored_runners(repo: str, options: AlertOptions, machine: str) -> list[tuple[str, str]]:
    """(results folder, machine) of every runner to decide on: this machine in this repository's results by
    default; the machines named; every machine of each --results folder."""
    own = asvdata.asv_config(repo).results_dir
    folders = list(options.results or []) or [own]
    runners = []
    if not options.results:
        asvdata.require_stored(own)
    for folder in folders:
        if not Path(folder).is_dir():
            raise UsageError(f"--results {folder}: no such folder (an asv results folder, with one folder per "
                             "machine)")
        found = sorted(p.parent.name for p in Path(folder).glob("*/machine.json"))
        if options.machines:
            names = [m for m in options.machines if m in found]
        elif options.results:
            names = found
        else:
            names = [machine] if machine in found else []
        runners += [(folder, m) for m in names]
    if not runners:
        wanted = ", ".join(options.machines) if options.machines else (machine if not options.results else "any")
        raise UsageError(f"no stored results of machine {wanted} in {', '.join(folders)}: run `fitbench alert` "
                         "(or `asv run --record-samples`) there first")
    return runners


def stored_rows(repo: str, base: str, head: str, options: AlertOptions, environments: dict[str, str],
                settings: DecisionSettings, calibrated: dict[str, float] | None, runners: list[tuple[str, str]],
                report: AlertDocument) -> tuple[dict[str, Comparison], int] | None:
    """Decide on what the runners stored: pairs where a pairing record still matches the samples, else each
    runner's processes (several runners: stratified by runner), at the level of the last stage stored."""
    envs = list(environments.values())
    for results_dir, machine in runners:
        asvdata.require_layout(asvdata.read_results(repo, [base, head], options.bench, envs, machine, results_dir),
                               "alert --stored")
    per_runner, reads, stale = read_back(repo, base, head, options.bench, envs, runners)
    labels = sorted({k.split("\0")[0] for k in per_runner})
    report.runners = labels
    merged_before: dict[str, asvdata.CellResult] = {}
    merged_after: dict[str, asvdata.CellResult] = {}
    for label in labels:
        for key, cell in per_runner[label + "\0base"].items():
            merged_before.setdefault(key, cell)
        for key, cell in per_runner[label + "\0head"].items():
            merged_after.setdefault(key, cell)
    if not merged_before or not merged_after:
        missing = " and ".join(n for n, got in (("base", merged_before), ("head", merged_after)) if not got)
        report.error = f"asv recorded no results for the {missing} commit (run `asv run --record-samples` on it first)"
        return None
    rows, tested = collect(merged_before, merged_after)
    for key in stale:
        rows[key].remarks.append(f"the pairing record of {', '.join(stale[key])} no longer matches the stored "
                                 "samples (measured again since): decided as unpaired processes")
    # a cell is decided in pairs only where every runner that holds it paired it
    holders = {k: [lbl for lbl in labels if k in per_runner[lbl + "\0base"] and k in per_runner[lbl + "\0head"]]
               for k in tested}
    for key, read in list(reads.items()):
        if key in tested and key not in stale and set(read.runners) != set(holders[key]):
            rows[key].remarks.append(f"pairs from {', '.join(sorted(set(read.runners)))} only, of "
                                     f"{', '.join(holders[key])}: decided as unpaired processes")
    reads = {k: r for k, r in reads.items() if k in tested and set(r.runners) == set(holders[k]) and k not in stale}
    if len(labels) > 1:  # the other runners' verdicts on what is not tested: the worst one stands
        _merge_untested(rows, per_runner, labels)
        tested = {k: v for k, v in tested.items() if rows[k].change != FAILED}

    def strata_of(key: str) -> tuple[list[list[float]], list[list[float]]]:
        groups = []
        for label in holders[key]:
            b, h = per_runner[label + "\0base"][key], per_runner[label + "\0head"][key]
            gb, gh = b.grouped(), h.grouped()
            if gb and gh and gb.values and gh.values:
                groups.append((gb.values, gh.values))
        return [g[0] for g in groups], [g[1] for g in groups]

    stages = max([r.planned_stages for r in reads.values()] or [1])  # the level the live alert planned
    family = len(tested)
    evidence = evidence_of(tested, reads, settings, calibrated, strata_of if len(labels) > 1 else None)
    decisions = decide.conclude(evidence, settings, {k: rows[k].higher_is_better for k in tested}, stage=stages,
                                stages=stages, family=family)
    apply_decisions(rows, decisions, reads, settings)
    for key in tested:
        if key not in reads and len(labels) > 1:
            rows[key].runners = {lbl: len((per_runner[lbl + "\0base"][key].grouped() or Grouped([], 0)).values)
                                 for lbl in holders[key]}
            rows[key].method += ", stratified by runner"
    report.stages_planned = stages
    return rows, family


_WORST = [FAILED, decide.WORSE, decide.INCONCLUSIVE, decide.BETTER, decide.EQUIVALENT, "skipped"]


def _merge_untested(rows: dict[str, Comparison], per_runner: dict[str, dict[str, asvdata.CellResult]],
                    labels: list[str]) -> None:
    """Rows that no test decides (failed, n/a, the exact tracks): each runner judged alone, the worst stands."""
    for label in labels[1:]:
        others, _ = collect(per_runner[label + "\0base"], per_runner[label + "\0head"])
        for key, row in others.items():
            mine = rows.get(key)
            if mine is None:
                rows[key] = row
            elif (mine.change in _WORST and row.change in _WORST
                  and _WORST.index(row.change) < _WORST.index(mine.change)):
                row.note = "; ".join(filter(None, [row.note, f"as {label} stored it (the worst of the runners)"]))
                rows[key] = row

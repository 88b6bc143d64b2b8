"""Where a regression lives: when the alert finds a StepTime cell worse, the configurations `fitbench
breakdown` cuts a step into (asv's bench_breakdown.StepPhases: forward, + loss, + backward, the framework's
own loop, `fit` without metrics, `fit`, `fit` with the progress bar) are measured in pairs of the same two
commits, and each phase (the difference of two configurations, fitbench.measure.breakdown.PHASES) gets its
change in milliseconds per step with an interval.

A pair's value for a phase is the median over its rounds of (head's phase − base's phase), each side's phase
the difference of its two configurations' windows in that round (a side's windows of one round run back to
back); the pairs' values give the Hodges-Lehmann shift and its exact interval (signedrank.shift_ci), at a
confidence that holds for the seven phases together. A phase grew when its interval lies above zero. It
says where the time went and decides nothing: the exit status is the cells' (docs/alerts.md).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fitbench.measure.breakdown import CONFIGURATION_IDS, FIT, PHASES
from fitbench.regress import pairedstage, signedrank
from fitbench.regress.pairedstage import PairedCell
from fitbench.regress.pairing import BASE, HEAD, PairOutcome

STEP_PHASES = ".StepPhases.time_configuration"  # fitbench's suite: bench_breakdown.StepPhases
LOCALIZED = ".StepTime.time_step"  # the cells whose step StepPhases cuts: StepTime(p) -> StepPhases(c, p)
# each phase's interval at 1 - 0.05 / phases (Bonferroni): together the seven cover their true changes 95 % of
# the time, so a phase said to have grown is one in twenty at most by chance, not one in six
PHASE_CONFIDENCE = 1 - 0.05 / len(PHASES)
# an exact interval at that confidence exists once the test's smallest two-sided p reaches 1 - confidence
MIN_INTERVAL_PAIRS = signedrank.min_pairs(1 - PHASE_CONFIDENCE)
LOCALIZE_PAIRS = MIN_INTERVAL_PAIRS + 1  # one pair may fail
MIN_SECONDS_LEFT = 60.0  # less than this under --max-minutes: not started
LOCALIZE_STAGE = 3  # pairs.jsonl and the progress lines call its pairs "stage 3"
ROUND_COST = 2.5  # a StepPhases pair against a StepTime pair of the same environment (26-27 s against 13 s)
_IDS = {name: cid for cid, name in CONFIGURATION_IDS.items()}


def round_estimate(per_pair: dict[str, float], backends: set[str]) -> float:
    """Seconds a round of StepPhases pairs should take: ROUND_COST times the StepTime pair of each backend's
    group (`per_pair`: seconds per pair by group label, which starts with its backend)."""
    return ROUND_COST * sum(max((s for label, s in per_pair.items() if label.startswith(b)), default=0.0)
                            for b in backends)


def seconds_needed(per_pair: dict[str, float], backends: set[str]) -> float:
    """Seconds the StepPhases pairs of these backends need together: MIN_INTERVAL_PAIRS rounds at
    round_estimate, never under MIN_SECONDS_LEFT."""
    return max(MIN_SECONDS_LEFT, MIN_INTERVAL_PAIRS * round_estimate(per_pair, backends))


def _log_size(ratio: float | None) -> float:
    """|log ratio|, the size of a change either way; 0 without a usable ratio."""
    return abs(math.log(ratio)) if ratio and ratio > 0 and math.isfinite(ratio) else 0.0


def within_time(worse: list[tuple[str, Any, str]], per_pair: dict[str, float], seconds_left: float
                ) -> tuple[list[tuple[str, Any, str]], list[tuple[str, Any, str]]]:
    """The worse cells (key, cell, backend), taken in the order given (the largest change first), whose
    backends' StepPhases pairs fit in `seconds_left` together (seconds_needed), and those left out: three
    backends' pairs rarely fit after a default alert, one or two do. A cell that does not fit is passed over
    and the smaller changes after it still tried; nothing may fit."""
    chosen: list[tuple[str, Any, str]] = []
    left: list[tuple[str, Any, str]] = []
    for item in worse:
        backends = {b for _, _, b in chosen} | {item[2]}
        (chosen if seconds_needed(per_pair, backends) <= seconds_left else left).append(item)
    return chosen, left


@dataclass
class PhaseChange:
    """One phase of the step at both commits, milliseconds per step."""

    name: str
    measured_as: str  # "forward" or "fit − fit, no metrics"
    base_ms: float | None  # the median over pairs of base's phase
    head_ms: float | None
    change_ms: float | None  # Hodges-Lehmann shift of the per-pair (head − base) phase
    low_ms: float | None  # its exact interval at PHASE_CONFIDENCE (None: fewer than MIN_INTERVAL_PAIRS pairs)
    high_ms: float | None
    grew: bool  # the interval lies above zero


@dataclass
class Localization:
    """Where one worse cell's time went."""

    cell: str  # the worse cell's key (asvdata.cell_key)
    backend: str
    params: str  # the worse cell's parameters as asv writes them ("256"), StepPhases' after the configuration
    pairs: int  # that measured every configuration on both sides
    failed_pairs: int
    seconds: float
    phases: list[PhaseChange] = field(default_factory=list)
    fit_change_ms: float | None = None  # the `fit` configuration's own change (what StepTime times)
    confidence: float = PHASE_CONFIDENCE  # of each phase's interval (the phases together: 95 %)
    grew: list[str] = field(default_factory=list)  # the phases whose interval lies above zero, largest first
    note: str = ""


def _round_values(base: list[float], head: list[float]) -> list[tuple[float, float]]:
    if len(base) == len(head) and base:
        return list(zip(base, head))
    return [(statistics.median(base), statistics.median(head))] if base and head else []


def phase_changes(pairs: list[dict[str, tuple[list[float], list[float]]]]) -> tuple[list[PhaseChange], float | None,
                                                                                     int]:
    """Per phase, from pairs given as {configuration id: (base windows, head windows)} in seconds per step
    (round by round): the phases, the `fit` configuration's change (ms) and the pairs that had every
    configuration on both sides. Pure."""
    whole = [p for p in pairs if all(cid in p and p[cid][0] and p[cid][1] for cid in CONFIGURATION_IDS)]
    phases = []
    for name, current, before in PHASES:
        deltas, base_ms, head_ms = [], [], []
        for pair in whole:
            cur = _round_values(*pair[_IDS[current]])
            prev = _round_values(*pair[_IDS[before]]) if before else [(0.0, 0.0)] * len(cur)
            if len(prev) != len(cur):  # rounds that do not line up: each configuration's medians
                cur = _round_values([statistics.median(pair[_IDS[current]][0])],
                                    [statistics.median(pair[_IDS[current]][1])])
                prev = _round_values([statistics.median(pair[_IDS[before]][0])],
                                     [statistics.median(pair[_IDS[before]][1])])
            rounds = [((hc - hp) - (bc - bp)) * 1000 for (bc, hc), (bp, hp) in zip(cur, prev)]
            deltas.append(statistics.median(rounds))
            base_ms.append(statistics.median((bc - bp) * 1000 for (bc, _), (bp, _) in zip(cur, prev)))
            head_ms.append(statistics.median((hc - hp) * 1000 for (_, hc), (_, hp) in zip(cur, prev)))
        if not deltas:
            phases.append(PhaseChange(name, current if before is None else f"{current} − {before}", None, None,
                                      None, None, None, False))
            continue
        estimate, low, high = signedrank.shift_ci(deltas, PHASE_CONFIDENCE)
        enough = len(deltas) >= MIN_INTERVAL_PAIRS
        phases.append(PhaseChange(name=name, measured_as=current if before is None else f"{current} − {before}",
                                  base_ms=statistics.median(base_ms), head_ms=statistics.median(head_ms),
                                  change_ms=estimate, low_ms=low if enough else None, high_ms=high if enough else None,
                                  grew=bool(enough and low > 0)))
    fit = _fit_deltas(whole)
    return phases, (signedrank.shift_ci(fit)[0] if fit else None), len(whole)


def _fit_deltas(pairs: list[dict[str, tuple[list[float], list[float]]]]) -> list[float]:
    """Per pair, the median over its rounds of head's `fit` window minus base's, ms per step."""
    return [statistics.median((h - b) * 1000 for b, h in _round_values(*p[_IDS[FIT]])) for p in pairs]


def unseen_change(pairs: list[dict[str, tuple[list[float], list[float]]]], cell_ratio: float | None,
                  cell_low: float | None = None) -> str:
    """A note when the `fit` configuration's change in these pairs is shown to be under half the worse cell's
    change (the upper end of fit's 95 % interval below half of the cell's change at the lower end of its own
    interval, `cell_low`, or its ratio without one, applied to base's `fit`): most of the regression is then in
    code the cut does not run, e.g. the benchmark's own harness around `fit` or a callback it passes, and no
    phase can place it. "" when the cut saw most of it, or when there is no ratio or too few pairs to tell.
    Pure."""
    whole = [p for p in pairs if all(cid in p and p[cid][0] and p[cid][1] for cid in CONFIGURATION_IDS)]
    least = cell_low if cell_low is not None else cell_ratio
    if (cell_ratio is None or least is None or not math.isfinite(least) or not math.isfinite(cell_ratio)
            or least <= 1 or len(whole) < MIN_INTERVAL_PAIRS):
        return ""
    base_fit_ms = statistics.median(statistics.median(p[_IDS[FIT]][0]) * 1000 for p in whole)
    if base_fit_ms <= 0:
        return ""
    least_ms = (least - 1) * base_fit_ms
    estimate, low, high = signedrank.shift_ci(_fit_deltas(whole), 0.95)
    if high >= least_ms / 2:
        return ""
    return (f"this cut's `fit` changed by {estimate:+.2f} ms per step [{low:+.2f}, {high:+.2f}] (95 %), under half "
            f"the cell's change ({cell_ratio:.3f}×, at least {least:.3f}× at 95 %: about "
            f"{(cell_ratio - 1) * base_fit_ms:+.2f} ms, at least {least_ms:+.2f}): most of the regression is in code "
            "StepPhases does not run (the benchmark's own harness around `fit`, or what it passes to it), and the "
            "phases cannot place it")


def _params(key: str) -> str:
    """"256" of "bench_fit.StepTime.time_step(256) [jax]" (asvdata.cell_key); "" without parameters."""
    return key.rsplit(" [", 1)[0].partition("(")[2][:-1]


def _windows(pair: PairOutcome, cells: dict[str, str]) -> dict[str, tuple[list[float], list[float]]]:
    """{configuration id: (base windows, head windows)} of one pair; {} when it failed. A configuration that
    erred on a side is left out (its windows stop where it failed)."""
    if pair.failed:
        return {}
    out = {}
    for worker_id, cid in cells.items():
        if pair.errors.get(worker_id):
            continue
        sides = pair.windows.get(worker_id, {})
        base, head = sides.get(BASE, []), sides.get(HEAD, [])
        if base and head and None not in base and None not in head:
            out[cid] = (list(base), list(head))
    return out


def where_it_grew(repo: str, base: str, head: str, worse: list[tuple[str, PairedCell, str]],
                  sides: dict[str, Any], info: dict[str, dict[str, Any]], seed: int, out: Path, deadline: float,
                  progress: Callable[[str], None], labels: dict[str, str] | None = None,
                  per_pair: dict[str, float] | None = None,
                  ratios: dict[str, tuple[float | None, float | None]] | None = None
                  ) -> tuple[list[Localization], list[str]]:
    """For the worse cells (key, its PairedCell, backend) that are StepTime cells with a StepPhases cell at
    their parameters, taken the largest change first (by `ratios`; in the order given without), the suite's
    StepPhases in pairs in their environments: the largest changes whose pairs fit before `deadline`
    (time.monotonic(); within_time, a round estimated from `per_pair`, the alert's stage-1 seconds per pair by
    group label), every environment's pairs in one stage. After the first pair, not gone on with when a
    configuration is n/a or errs on a side (it would say nothing). `ratios`: each worse cell's ratio and its
    interval's lower end, to order them and to say when the cut did not see a change (unseen_change).
    Returns the localizations and the remarks for the report (what was not measured, and why)."""
    worse = sorted((w for w in worse if w[1].benchmark.endswith(LOCALIZED)),
                   key=lambda w: -_log_size((ratios or {}).get(w[0], (None, None))[0]))  # the largest change first
    if not worse:
        return [], []
    phases_bench = next((name for name in sorted(info) if name.endswith(STEP_PHASES)), None)
    if phases_bench is None:
        return [], ["where it grew: not measured, this suite has no StepPhases benchmark (fitbench's own suite "
                    "has bench_breakdown.StepPhases since 2026-12-04; `fitbench asv-init --force` rewrites a "
                    "user's suite with one)"]
    ids: dict[str, dict[str, str]] = {}  # worse key -> {worker id: configuration id}
    phase_cells: dict[str, list[PairedCell]] = {}
    for key, cell, backend in worse:
        params = _params(key)
        names = {f"{phases_bench}('{cid}'{', ' + params if params else ''})": cid for cid in CONFIGURATION_IDS}
        found = pairedstage.pairable(list(names), {backend: cell.env_name}, info)
        ids[key] = {c.worker_id: names[c.key.rsplit(" [", 1)[0]] for c in found.values()}
        phase_cells[key] = list(found.values())
    remarks = []
    unmatched = [key for key, _, _ in worse if not phase_cells[key]]
    if unmatched:  # asv-init's suites have StepPhases at the largest batch only
        remarks.append(f"where it grew: not measured for {', '.join(unmatched)}: StepPhases has no cell at "
                       f"{'its' if len(unmatched) == 1 else 'their'} parameters")
    measurable = [w for w in worse if phase_cells[w[0]]]
    if not measurable:
        return [], remarks
    left = deadline - time.monotonic()
    worse, left_out = within_time(measurable, per_pair or {}, left)
    if not worse:
        needed = seconds_needed(per_pair or {}, {measurable[0][2]})
        return [], [*remarks, f"where it grew: not measured, {max(0.0, left) / 60:.1f} min were left under "
                              f"--max-minutes and {MIN_INTERVAL_PAIRS} pairs of StepPhases need about "
                              f"{needed / 60:.1f} (a larger --max-minutes, or `fitbench breakdown --flush-subnormals "
                              "--keep-freed-memory` at both commits)"]
    if left_out:
        remarks.append(f"where it grew: not measured for {', '.join(key for key, _, _ in left_out)}: with "
                       f"{', '.join(key for key, _, _ in worse)} measured (the largest change first), their pairs "
                       "would not fit in what --max-minutes left; `fitbench alert BASE HEAD --bench CELL "
                       "--backend B` measures one alone")
    cells = [c for key, _, _ in worse for c in phase_cells[key]]
    progress(f"where it grew: {LOCALIZE_PAIRS} pairs of StepPhases ({len(CONFIGURATION_IDS)} configurations) "
             f"for {len(worse)} worse cell(s), within --max-minutes ({left / 60:.1f} min left)")
    first = pairedstage.run_stage(repo, base, head, sides, cells, 1, "alternate", LOCALIZE_STAGE, seed, out, 0, {},
                                  progress, labels=labels, deadline=deadline)
    pairs = {g: list(p) for g, p in first.pairs.items()}
    stopped = dict(first.stopped)
    lacking = [p for ps in pairs.values() for p in ps if p.failed or p.errors or p.not_available]
    if not lacking:
        rest = pairedstage.run_stage(repo, base, head, sides, cells, LOCALIZE_PAIRS - 1, "alternate", LOCALIZE_STAGE,
                                     seed + 1, out, 1, {}, progress, labels=labels, deadline=deadline)
        for g, ps in rest.pairs.items():
            pairs.setdefault(g, []).extend(ps)
        stopped.update(rest.stopped)
    localized = []
    for key, cell, backend in worse:
        # a worker id names a configuration in every environment: this cell's groups are its environment's
        holding = {c.group for c in cells if c.env_name == cell.env_name and c.worker_id in ids[key]}
        mine = [g for g in pairs if g in holding]
        group_pairs = [p for g in mine for p in pairs[g]]
        windows = [_windows(p, ids[key]) for p in group_pairs]
        phases, fit_ms, whole = phase_changes(windows)
        grew = sorted((p for p in phases if p.grew), key=lambda p: -(p.change_ms or 0.0))
        notes = []
        if whole < MIN_INTERVAL_PAIRS:
            notes.append(f"{whole} pair(s) measured every configuration on both sides: too few for the phases' "
                         f"intervals (at least {MIN_INTERVAL_PAIRS}), so no phase is said to have grown")
        missing = sorted({side for p in group_pairs for wid in ids[key] for side in p.not_available.get(wid, [])})
        if missing:
            notes.append(f"StepPhases is n/a at the {' and '.join(missing)} commit (its fitbench has no "
                         f"step_configurations, or its environment cannot run the backend): no more pairs")
        errors = [e for p in group_pairs for wid in ids[key] for e in p.errors.get(wid, {}).values()]
        errors += [p.failed for p in group_pairs if p.failed]
        if errors:
            notes.append(f"StepPhases failed: {errors[0]}")
        notes += [stopped[g] for g in mine if g in stopped]
        notes.append(unseen_change(windows, *(ratios or {}).get(key, (None, None))))
        localized.append(Localization(cell=key, backend=backend, params=_params(key), pairs=whole,
                                      failed_pairs=sum(1 for p in group_pairs if p.failed),
                                      seconds=round(sum(p.seconds for p in group_pairs), 1),
                                      phases=phases, fit_change_ms=fit_ms, grew=[p.name for p in grew],
                                      note="; ".join(filter(None, notes))))
    return localized, remarks

"""`fitbench history`: change points and drift over asv's stored results, per cell, along the first-parent
history.

The detector is E-divisive with means (Matteson & James 2014; what Apache Otava and MongoDB's CI run), adapted
to what fitbench stores: each commit carries several processes, so the observations are the processes' values
(log seconds per step) and the unit that is permuted is the **process**: each keeps its value and is dealt to
a commit at random (why, below). Binary
segmentation: in a segment, the split between two commits that maximises the energy statistic

    Q(τ) = m·n/(m+n) · ( 2·mean|x−y| − mean|x−x'| − mean|y−y'| )    (x: processes left of τ, y: right)

is tested by dealing the segment's processes to its commits at random (`PERMUTATIONS` draws, a fixed seed: the
same history gives the same answer) and recomputing the maximum; it is a change point when p ≤ `alpha` (0.01)
and the segments' ratio is at least `min_change` (5 %) away from 1, and both halves are searched again. Why
this detector: it assumes no distribution (step times are skewed, with outlier processes) and finds several
changes at once. Why processes and not commits are permuted: with commits as the unit, 8 commits can never
reach p < 0.01 (a 4 | 4 split has 2 arrangements in 70). The price is an assumption the alert makes too: the
processes of different commits are exchangeable when nothing changed — true when the range was measured with
interleaved rounds (`asv run --interleave-rounds`, as fitbench's nightly job does), not when each commit was
measured on another day (the machine's drift would then read as a change; `min_change` keeps small drifts
out). Each change point is reported with the medians of the segments either side, their ratio with the
Hodges-Lehmann interval (fitbench.regress.decide) and its p-value.

Drift: over the whole window, the first `DRIFT_COMMITS` commits' processes against the last ones' (exact
rank-sum, Hodges-Lehmann ratio and interval): three 4 % steps add up to 12 % here even where no single step
is found.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from fitbench import __version__, exits
from fitbench.errors import UsageError
from fitbench.regress import asvdata
from fitbench.regress.decide import group_processes
from fitbench.regress.ranksum import hodges_lehmann_ci, mann_whitney_u
from fitbench.report.document import Document
from fitbench.report.io import utc_stamp

SCHEMA_VERSION = 1  # of the history document
PERMUTATIONS = 1999
DRIFT_COMMITS = 3  # the window's first and last commits compared for drift
MIN_COMMITS = 4  # a cell with fewer stored commits is not searched
EXIT_NONE, EXIT_FOUND, EXIT_USAGE, EXIT_UNDECIDED = exits.OK, exits.FOUND, exits.ERROR, exits.UNDECIDED


@dataclass
class ChangePoint:
    commit: str  # the first commit after the change
    index: int  # its position in the cell's series (0 = the oldest commit searched)
    subject: str
    before: float  # median of the per-process values of the segment before (seconds for StepTime)
    after: float
    ratio: float  # after / before, Hodges-Lehmann over the two segments' processes
    ci_low: float
    ci_high: float
    p_value: float  # E-divisive permutation p (processes dealt to the commits at random)
    direction: str  # worse | better | small: within ±min_change (seconds per step: slower is worse)


@dataclass
class Drift:
    commits: int  # how many commits at each end of the window
    ratio: float  # last ÷ first
    ci_low: float
    ci_high: float
    p_value: float  # exact two-sided rank-sum, first vs last commits' processes
    drifted: bool = field(metadata={"doc": "significant at alpha and at least min_change, towards worse"})


@dataclass
class CellHistory:
    cell: str  # benchmark(params) [backend]
    unit: str | None
    commits: list[str]  # oldest first, those with usable stored processes
    medians: list[float]  # per commit: median of its processes' values
    processes: list[int]  # per commit
    change_points: list[ChangePoint]
    drift: Drift | None
    note: str = ""


@dataclass
class HistoryDocument(Document):
    """What `fitbench history` writes (history.json; fitbench/schemas/history.schema.json is built from this)."""

    since: str
    until: str
    bench: str
    commits_in_window: int
    cells: list[CellHistory]
    alpha: float
    min_change: float
    permutations: int
    exit_status: int
    verdict: str
    seconds: float
    fitbench_version: str
    finished: str
    command: str = "history"
    schema_version: int = SCHEMA_VERSION



# ---------- the detector (pure: per-commit groups of values in, splits out) ----------

def _splits(values: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """The energy statistic Q at every cut of `values` (processes in commit order; a cut is the number of
    processes left of a commit boundary). One distance matrix and its 2-D prefix sums give every split's three
    mean distances, rather than three pairwise matrices per split — the permutation test asks this thousands
    of times."""
    n = len(values)
    prefix = np.zeros((n + 1, n + 1))
    prefix[1:, 1:] = np.abs(values[:, None] - values[None, :]).cumsum(0).cumsum(1)
    m = cuts.astype(float)
    rest = n - m
    within_x = prefix[cuts, cuts]
    between = prefix[cuts, n] - within_x
    within_y = prefix[n, n] - 2 * prefix[cuts, n] + within_x  # the matrix is symmetric
    return m * rest / n * (2 * between / (m * rest) - within_x / m**2 - within_y / rest**2)


def best_split(groups: Sequence[np.ndarray]) -> tuple[int, float]:
    """The split τ (1..len-1: groups[:τ] | groups[τ:]) of largest energy statistic, and that statistic."""
    cuts = np.cumsum([len(g) for g in groups])[:-1]
    q = _splits(np.concatenate(groups), cuts)
    tau = int(np.argmax(q))
    return tau + 1, float(q[tau])


def split_p_value(groups: Sequence[np.ndarray], statistic: float, permutations: int = PERMUTATIONS,
                  seed: int = 20261130) -> float:
    """P(max over splits ≥ statistic) with the processes dealt at random to the commits (each keeps its count):
    the null that every process of the segment comes from one distribution."""
    rng = np.random.default_rng(seed)
    pooled = np.concatenate(groups)
    cuts = np.cumsum([len(g) for g in groups])[:-1]
    exceed = sum(_splits(rng.permutation(pooled), cuts).max() >= statistic - 1e-12 for _ in range(permutations))
    return (int(exceed) + 1) / (permutations + 1)


def change_points(groups: Sequence[np.ndarray], alpha: float = 0.01, permutations: int = PERMUTATIONS,
                  min_groups: int = 2) -> list[tuple[int, float]]:
    """Binary segmentation: [(index of the first group after a change, p)], sorted by index."""
    found: list[tuple[int, float]] = []

    def search(start: int, stop: int) -> None:
        segment = groups[start:stop]
        if len(segment) < 2 * min_groups - 1 or len(segment) < 3:
            return
        tau, q = best_split(segment)
        p = split_p_value(segment, q, permutations)
        if p <= alpha:
            found.append((start + tau, p))
            search(start, start + tau)
            search(start + tau, stop)

    search(0, len(groups))
    return sorted(found)


# ---------- over asv's stored results ----------

def window(repo: str, since: str, until: str) -> list[str]:
    """Commits from SINCE (included) to UNTIL along UNTIL's first parents, oldest first."""
    after = asvdata.first_parents_after(repo, since, until)
    if after is None:
        raise UsageError(f"--since {since[:10]} is not on {until[:10]}'s first-parent history")
    return [since, *after]


def _log_values(cell: asvdata.CellResult) -> list[float] | None:
    if not cell.samples or not cell.per_process:
        return None
    grouped = group_processes(cell.samples, cell.per_process)
    return [math.log(v) for v in grouped.values] if len(grouped.values) >= 2 else None


def direction(ratio: float, min_change: float) -> str:
    if ratio - 1 >= min_change:
        return "worse"
    return "better" if 1 / ratio - 1 >= min_change else "small"


def analyse_cell(name: str, unit: str | None, series: list[tuple[str, list[float]]], subjects: dict[str, str],
                 alpha: float, min_change: float, permutations: int) -> CellHistory:
    """One cell's change points and drift from [(commit, its processes' log values)], oldest first."""
    commits = [c for c, _ in series]
    groups = [np.asarray(v) for _, v in series]
    medians = [float(math.exp(np.median(g))) for g in groups]
    history = CellHistory(cell=name, unit=unit, commits=commits, medians=medians,
                          processes=[len(g) for g in groups], change_points=[], drift=None)
    if len(groups) < MIN_COMMITS:
        history.note = f"{len(groups)} commit(s) with stored processes: at least {MIN_COMMITS} are needed"
        return history
    points = change_points(groups, alpha, permutations)
    bounds = [0, *[i for i, _ in points], len(groups)]
    for k, (index, p) in enumerate(points):
        left = np.exp(np.concatenate(groups[bounds[k]:index]))
        right = np.exp(np.concatenate(groups[index:bounds[k + 2]]))
        ratio, low, high = hodges_lehmann_ci(left.tolist(), right.tolist())
        history.change_points.append(ChangePoint(
            commit=commits[index], index=index, subject=subjects.get(commits[index], ""),
            before=float(np.median(left)), after=float(np.median(right)), ratio=ratio, ci_low=low, ci_high=high,
            p_value=p, direction=direction(ratio, min_change)))
    ends = min(DRIFT_COMMITS, len(groups) // 2)
    first = np.exp(np.concatenate(groups[:ends])).tolist()
    last = np.exp(np.concatenate(groups[-ends:])).tolist()
    ratio, low, high = hodges_lehmann_ci(first, last)
    _, p = mann_whitney_u(last, first)
    history.drift = Drift(commits=ends, ratio=ratio, ci_low=low, ci_high=high, p_value=p,
                          drifted=p <= alpha and ratio - 1 >= min_change)
    return history


def history(repo: str, since_rev: str, until_rev: str = "HEAD", bench: str = r"StepTime\.time_step",
            backends: list[str] | None = None, alpha: float = 0.01, min_change: float = 0.05,
            permutations: int = PERMUTATIONS, machine: str | None = None,
            progress: Callable[[str], None] = lambda line: None) -> HistoryDocument:
    started = time.monotonic()
    asvdata.require_asv()
    if not 0 < alpha < 1:
        raise UsageError(f"--alpha must be between 0 and 1, got {alpha}")
    repo = asvdata.repo_root(repo)
    since, until = asvdata.resolve_commit(repo, since_rev), asvdata.resolve_commit(repo, until_rev)
    commits = window(repo, since, until)
    asvdata.select_benchmarks(repo, bench)
    environments = asvdata.backend_environments(repo, backends)
    note = asvdata.writer(asvdata.asv_config(repo).results_dir)
    if note:
        progress(note)
    stored = asvdata.read_results(repo, commits, bench, list(environments.values()), machine)
    subjects = {c: asvdata.git(repo, "log", "-1", "--format=%s", c) for c in commits}
    keys = sorted({k for cells in stored.values() for k in cells})
    cells = []
    for key in keys:
        series, unit = [], None
        for commit in commits:
            cell = stored[commit].get(key)
            values = _log_values(cell) if cell else None
            if values:
                series.append((commit, values))
                unit = cell.unit
        progress(f"{key}: {len(series)} commit(s) with stored processes")
        cells.append(analyse_cell(key, unit, series, subjects, alpha, min_change, permutations))
    searched = [c for c in cells if c.drift is not None]
    worse = any(p.direction == "worse" for c in searched for p in c.change_points) or any(
        c.drift.drifted for c in searched)
    status = EXIT_FOUND if worse else (EXIT_NONE if searched else EXIT_UNDECIDED)
    verdict = {EXIT_FOUND: "slower: a change point or drift towards worse",
               EXIT_NONE: "no change towards worse", EXIT_UNDECIDED: "nothing to search: too few stored commits"}
    return HistoryDocument(since=since, until=until, bench=bench, commits_in_window=len(commits), cells=cells,
                           alpha=alpha, min_change=min_change, permutations=permutations, exit_status=status,
                           verdict=verdict[status], seconds=round(time.monotonic() - started, 1),
                           fitbench_version=__version__, finished=utc_stamp())


def render_markdown(doc: HistoryDocument) -> str:
    lines = [f"**{doc.verdict}** — {doc.commits_in_window} commits from {doc.since[:10]} to {doc.until[:10]} "
             f"(first parent); E-divisive means, {doc.permutations} permutations of the processes over the commits, "
             f"alpha {doc.alpha}; #N: the commit's place among those with stored processes, oldest first, from 0", ""]
    for c in doc.cells:
        lines.append(f"### {c.cell}")
        if c.note:
            lines += [c.note, ""]
            continue
        def value(m: float, unit: str | None = c.unit) -> str:  # the header and the table in one unit
            return f"{m * 1e3:.3g} ms" if unit == "seconds" else f"{m:.4g}"

        lines.append(f"{len(c.commits)} commits with stored processes; medians "
                     + " → ".join(value(m) for m in c.medians))
        lines.append("")
        if c.change_points:
            lines += ["| change point | subject | before | after | ratio [95 % interval] | p | direction |",
                      "|---|---|---|---|---|---|---|"]
            for p in c.change_points:
                lines.append(f"| {p.commit[:10]} (#{p.index}) | {p.subject.replace('|', '/')} | {value(p.before)} | "
                             f"{value(p.after)} | {p.ratio:.3f} [{p.ci_low:.3f}, {p.ci_high:.3f}] | {p.p_value:.4f} | "
                             f"{p.direction} |")
        else:
            lines.append("no change point")
        if c.drift:
            d = c.drift
            lines.append(f"\ndrift, last {d.commits} commits ÷ first {d.commits}: {d.ratio:.3f} "
                         f"[{d.ci_low:.3f}, {d.ci_high:.3f}], p {d.p_value:.4f}"
                         + (" — **drifted towards worse**" if d.drifted else ""))
        lines.append("")
    return "\n".join(lines)

"""`fitbench bisect GOOD BAD`: the first commit on GOOD..BAD (first parent) whose cells are worse than GOOD's.

Each step is a whole `fitbench alert GOOD CANDIDATE` (fitbench.regress.alert): interleaved fresh processes of
both commits, exact tests on per-process values, equivalence against ±threshold, a second stage for what the
first could not decide. A step has three answers, as in Chromium's Pinpoint: *worse* (a watched cell is
worse, or significantly off GOOD and nearer BAD's value than GOOD's: the regression is at or before the
candidate), *same* (every watched cell is shown equivalent, or better, and nearer GOOD's value: it is after),
*unknown* (a cell stayed inconclusive after the second stage, or equivalent but nearer BAD without being
significantly off GOOD: the search stops there and says which range is left, exit 3). A noisy step is never
called "same", which is what makes a plain bisection (`asv find`: one value per commit, no test) wander off
when the noise is near the change.

The first step compares GOOD with BAD and picks the cells to watch: those worse at BAD. Every later step
measures only those cells, and compares the candidate with GOOD rather than with its neighbour, so that one
base is measured beside every candidate and the answers stay comparable. What asv measures stays in asv's
results (`asv publish` shows the points); GOOD is measured again beside each candidate, since only processes
interleaved in one run are compared. Once the culprit is named, where its worse StepTime cells grew against
GOOD is measured once (fitbench.regress.localize, as the alert does; its steps do without).
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from fitbench import __version__
from fitbench.errors import UsageError
from fitbench.regress import asvdata, decide, pairedalert
from fitbench.regress.alert import alert
from fitbench.regress.alertdoc import EXIT_ERROR, EXIT_OK, EXIT_REGRESSION, EXIT_UNDECIDED, AlertOptions
from fitbench.regress.alertreport import where_it_grew_lines
from fitbench.regress.decide import ALERT_SETTINGS, BETTER, EQUIVALENT, WORSE, DecisionSettings
from fitbench.regress.localize import Localization
from fitbench.report.document import Document
from fitbench.report.io import keep_document, keep_markdown, utc_stamp

# of the bisect document (2: `package`, for a search over a package's released versions; 3: `localized`; 4: each
# cell's `of_bad`)
SCHEMA_VERSION = 4
SAME, UNKNOWN, FAILED_STEP = "same", "unknown", "failed"
VERDICTS = {EXIT_OK: "no regression in the range", EXIT_REGRESSION: "culprit found", EXIT_ERROR: "error",
            EXIT_UNDECIDED: "undecided"}


@dataclass
class CellEvidence:
    """One watched cell at one step: the candidate against GOOD."""

    cell: str  # benchmark(params) [backend]
    change: str  # worse | better | equivalent | inconclusive | failed | skipped
    ratio: float | None  # candidate / GOOD (seconds per step: > 1 is slower)
    ci_low: float | None
    ci_high: float | None
    stage: int | None
    processes: list[int]  # [GOOD, candidate] that gave usable values
    # its change as a share of BAD's, on a log scale (0: GOOD's value, 1: BAD's); null at step 0
    of_bad: float | None = None


@dataclass
class BisectStep:
    """One alert of the search: GOOD against one candidate commit."""

    index: int  # position of the candidate on GOOD..BAD, 1 = the first commit (or version) after GOOD
    commit: str  # the candidate: a commit, or with `package` a released version
    subject: str
    answer: str  # worse | same | unknown | failed
    alert_exit_status: int
    cells: list[CellEvidence]
    seconds: float
    report: str  # the step's report (alert.md, or versions' JSON), relative to the output folder


@dataclass
class BisectDocument(Document):
    """What `fitbench bisect` writes (bisect.json; fitbench/schemas/bisect.schema.json is built from this)."""

    good: str
    bad: str
    good_rev: str
    bad_rev: str
    bench: str
    commits_in_range: int = field(metadata={"doc": "commits on GOOD..BAD, first parent, BAD included"})
    watched: list[str] = field(metadata={"doc": "the cells worse at BAD than at GOOD, which every later step "
                                                "measures"})
    steps: list[BisectStep]
    culprit: str | None = field(metadata={"doc": "the first commit whose watched cells are worse than GOOD's; "
                                                 "null when BAD is not worse, or the search could not decide"})
    culprit_subject: str | None
    culprit_evidence: list[CellEvidence] = field(metadata={"doc": "the culprit's worse cells against GOOD"})
    range_left: list[str] | None = field(metadata={"doc": "undecided: [last commit shown same, first shown "
                                                          "worse]; the culprit lies after the first, up to the "
                                                          "second"})
    commits_measured: int = field(metadata={"doc": "commits measured besides GOOD and BAD"})
    settings: dict[str, Any]
    exit_status: int
    verdict: str
    note: str
    seconds: float
    fitbench_version: str
    finished: str
    package: str | None = field(default=None, metadata={"doc": "null: GOOD and BAD are commits; else they are "
                                                                 "released versions of this package"})
    localized: list[Localization] | None = field(default=None, metadata={
        "doc": "where the culprit's worse StepTime cells grew against GOOD, phase by phase, measured after the "
               "search (fitbench.regress.localize); null when nothing was measured (no culprit, no worse "
               "StepTime cell, or it failed: localize_remarks says why)"})
    localize_remarks: list[str] = field(default_factory=list, metadata={
        "doc": "why where it grew was not measured, or what went wrong there (no bearing on the exit status)"})
    command: str = "bisect"
    schema_version: int = SCHEMA_VERSION



def first_parent_range(repo: str, good: str, bad: str) -> list[str]:
    """The commits after GOOD up to BAD along BAD's first parents, oldest first; bad input unless GOOD is one of
    BAD's first-parent ancestors and the range holds at least two commits."""
    if good == bad:
        raise UsageError(f"GOOD and BAD are the same commit ({good[:10]}): nothing to search")
    commits = asvdata.first_parents_after(repo, good, bad)
    if commits is None:
        raise UsageError(f"GOOD ({good[:10]}) is not on BAD's first-parent history: give an older GOOD, or swap "
                         "them if GOOD is the newer one")
    if len(commits) < 2:
        raise UsageError(f"GOOD..BAD holds one commit ({bad[:10]}): `fitbench alert GOOD BAD` says whether it is "
                         "worse; there is nothing to bisect")
    return commits


def cell_name(row: dict[str, Any]) -> str:
    """A comparison row as asv names the cell, with its backend: `module.Class.method(params) [backend]`."""
    params = f"({', '.join(row['params'].values())})" if row["params"] else ""
    return f"{row['benchmark']}{params}" + (f" [{row['backend']}]" if row.get("backend") else "")


def _evidence(row: dict[str, Any]) -> CellEvidence:
    return CellEvidence(cell=cell_name(row), change=row["change"], ratio=row.get("ratio"),
                        ci_low=row.get("ci_low"), ci_high=row.get("ci_high"), stage=row.get("stage"),
                        processes=[row.get("processes_base") or 0, row.get("processes_head") or 0])


def _toward_bad(cell: CellEvidence, bad_ratio: float) -> tuple[float, float | None] | None:
    """The cell's change in units of the regression BAD showed (0: GOOD's value, 1: BAD's), and its interval's
    end nearest GOOD in the same units (None: no interval); None when either ratio is missing."""
    if cell.ratio is None or not bad_ratio or bad_ratio <= 0 or bad_ratio == 1 or cell.ratio <= 0:
        return None
    scale = math.log(bad_ratio)
    near_good = cell.ci_low if scale > 0 else cell.ci_high  # the interval's end on GOOD's side
    return (math.log(cell.ratio) / scale,
            math.log(near_good) / scale if near_good is not None and near_good > 0 else None)


def place_between(cells: list[CellEvidence], at_bad: dict[str, float]) -> None:
    """Each cell's `of_bad`: where the candidate sits between GOOD (0) and BAD (1), on a log scale."""
    for c in cells:
        where = _toward_bad(c, at_bad[c.cell]) if c.cell in at_bad else None
        c.of_bad = round(where[0], 3) if where is not None else None


def cell_answer(c: CellEvidence, at_bad: dict[str, float] | None = None) -> str:
    """One watched cell's answer at a step: worse, same, failed or unknown. With `at_bad` (each watched cell's
    ratio at BAD against GOOD), a cell is also worse when it is significantly off GOOD towards BAD and nearer
    BAD than GOOD (its change at least half of BAD's, on a log scale), and "same" needs it nearer GOOD: a
    regression near --min-change is seen at one step and called equivalent at the next, and the plain rule
    then named a later, innocent commit (2026-12-04, docs/alerts.md)."""
    where = _toward_bad(c, at_bad[c.cell]) if at_bad and c.cell in at_bad else None
    if c.change == WORSE or (where is not None and where[1] is not None and where[1] > 0 and where[0] >= 0.5):
        return WORSE
    if c.change in (EQUIVALENT, BETTER):
        return SAME if where is None or where[0] < 0.5 else UNKNOWN
    return FAILED_STEP if c.change == "failed" else UNKNOWN


def step_answer(cells: list[CellEvidence], at_bad: dict[str, float] | None = None) -> str:
    """worse if a watched cell is worse; same if every one is same; failed if one failed; unknown otherwise
    (cell_answer)."""
    answers = [cell_answer(c, at_bad) for c in cells]
    if WORSE in answers:
        return WORSE
    if FAILED_STEP in answers or not cells:
        return FAILED_STEP
    if set(answers) == {SAME}:
        return SAME
    return UNKNOWN


def watched_bench(cells: list[str]) -> tuple[str, tuple[str, ...]]:
    """asv's `-b` regex for exactly these cells, and their backends."""
    names, backends = [], []
    for cell in cells:
        name, _, backend = cell.partition(" [")
        names.append(re.escape(name))
        if backend:
            backends.append(backend.rstrip("]"))
    return "^(" + "|".join(dict.fromkeys(names)) + ")$", tuple(dict.fromkeys(backends))


def search(count: int, measure: Callable[[int], BisectStep]) -> tuple[int, int, int]:
    """Binary search over positions 1..count of a range whose last position (BAD) was shown worse than GOOD.
    Returns (status, low, high): position `low` is the last shown same as GOOD (0: GOOD itself) and `high` the
    first shown worse; EXIT_REGRESSION when they are neighbours (`high` is the culprit), else the step that
    could not tell stopped the search (EXIT_UNDECIDED, or EXIT_ERROR when it failed)."""
    low, high = 0, count
    while high - low > 1:
        middle = (low + high) // 2
        answer = measure(middle).answer
        if answer == WORSE:
            high = middle
        elif answer == SAME:
            low = middle
        else:
            return (EXIT_ERROR if answer == FAILED_STEP else EXIT_UNDECIDED), low, high
    return EXIT_REGRESSION, low, high


def bisect(repo: str, good_rev: str, bad_rev: str, out_dir: str, settings: DecisionSettings = ALERT_SETTINGS,
           options: AlertOptions = AlertOptions(),
           progress: Callable[[str], None] = lambda line: None, copies: tuple[str, ...] = ()) -> BisectDocument:
    """Search GOOD..BAD for the first commit worse than GOOD; every step's alert report goes under `out_dir`,
    bisect.json and bisect.md beside them, and bisect.json to each of `copies` (`--json`) whenever it is kept."""
    started = time.monotonic()
    asvdata.require_asv()
    settings.check()
    options.check()
    if options.stored:
        raise UsageError("bisect measures each step afresh: --stored does not apply")
    repo = asvdata.repo_root(repo)
    good, bad = asvdata.resolve_commit(repo, good_rev), asvdata.resolve_commit(repo, bad_rev)
    commits = first_parent_range(repo, good, bad)
    asvdata.select_benchmarks(repo, options.bench)  # a regex that selects nothing: bad input, before any run
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps: list[BisectStep] = []
    reports: dict[str, dict[str, Any]] = {}  # each step's alert report, by candidate commit
    at_bad: dict[str, float] = {}  # each watched cell's ratio at BAD against GOOD (step 0)
    # a step's "unknown" must show; where a regression grew is one alert's question, not every step's (each
    # would spend minutes on it): `fitbench alert GOOD CULPRIT` answers it
    every_cell = AlertOptions(**{**asdict(options), "undecided_ok": False, "localize": False})

    def measure(index: int, request: AlertOptions, watched: list[str] | None) -> tuple[BisectStep, dict[str, Any]]:
        commit = commits[index - 1]
        subject = asvdata.git(repo, "log", "-1", "--format=%s", commit)
        folder = out / f"step-{len(steps)}-{commit[:10]}"
        progress(f"step {len(steps)}: {good[:10]} against {commit[:10]} ({index} of {len(commits)} on the range)"
                 f" — {subject}")
        t0 = time.monotonic()
        status, report = alert(repo, good, commit, str(folder), settings, request,
                               progress=lambda line: progress(f"  {line}"))
        rows = report.get("comparisons", [])
        if watched is not None:
            rows = [r for r in rows if cell_name(r) in watched]
        cells = [_evidence(r) for r in rows]
        place_between(cells, at_bad)
        if report.get("error"):
            answer = FAILED_STEP
        elif watched is not None:
            answer = step_answer(cells, at_bad)
        elif any(c.change == WORSE for c in cells):  # BAD against GOOD: worse somewhere, even beside a failure
            answer = WORSE
        else:
            answer = {EXIT_OK: SAME, EXIT_ERROR: FAILED_STEP}.get(status, UNKNOWN)
        step = BisectStep(index=index, commit=commit, subject=subject, answer=answer, alert_exit_status=status,
                          cells=cells, seconds=round(time.monotonic() - t0, 1),
                          report=os.path.relpath(folder / "alert.md", out))
        steps.append(step)
        reports[commit] = report
        progress(f"step {len(steps) - 1}: {commit[:10]} is {answer}")
        return step, report

    # step 0: is BAD worse than GOOD at all, and in which cells?
    first, report = measure(len(commits), every_cell, None)
    watched = [c.cell for c in first.cells if c.change == WORSE]
    at_bad.update({c.cell: c.ratio for c in first.cells if c.change == WORSE and c.ratio is not None})
    culprit, note, range_left = None, "", None
    if first.answer == FAILED_STEP:
        status, note = EXIT_ERROR, report.get("error") or f"a benchmark failed (see {first.report})"
    elif first.answer == SAME:
        status, note = EXIT_OK, "BAD is not worse than GOOD in any selected cell: the range holds no regression"
    elif first.answer == UNKNOWN:
        status, note = EXIT_UNDECIDED, ("BAD against GOOD: no cell worse, but some could not be decided "
                                        f"(see {first.report})")
    else:
        bench, backends = watched_bench(watched)
        request = AlertOptions(**{**asdict(every_cell), "bench": bench, "backends": backends or options.backends})
        status, low, high = search(len(commits), lambda index: measure(index, request, watched)[0])
        last_same = good if low == 0 else commits[low - 1]
        if status == EXIT_REGRESSION:
            culprit = commits[high - 1]
            note = (f"{culprit[:10]} is the first commit worse than GOOD; "
                    + ("BAD itself" if high == len(commits) else f"{last_same[:10]}, the commit before it, is not"))
        else:
            range_left = [last_same, commits[high - 1]]
            note = (f"the search stopped at {steps[-1].commit[:10]} ({steps[-1].answer}): the culprit lies after "
                    f"{last_same[:10]}, up to {commits[high - 1][:10]}; to go on, bisect that range again "
                    f"(`fitbench bisect {last_same[:10]} {commits[high - 1][:10]}`), on a quieter machine or with "
                    "more pairs (--processes), as its step report's detectable change says")
    evidence: list[CellEvidence] = []
    if culprit is not None:
        where = next(s for s in steps if s.commit == culprit)
        evidence = [c for c in where.cells if cell_answer(c, at_bad) == WORSE]
    doc = BisectDocument(
        good=good, bad=bad, good_rev=good_rev, bad_rev=bad_rev, bench=options.bench, commits_in_range=len(commits),
        watched=watched, steps=steps, culprit=culprit,
        culprit_subject=asvdata.git(repo, "log", "-1", "--format=%s", culprit) if culprit else None,
        culprit_evidence=evidence, range_left=range_left, commits_measured=len({s.commit for s in steps} - {bad}),
        settings={"decision": asdict(settings), "alert": asdict(options)},
        exit_status=EXIT_OK if status == EXIT_UNDECIDED and options.undecided_ok else status,
        verdict=VERDICTS[status], note=note, seconds=round(time.monotonic() - started, 1),
        fitbench_version=__version__, finished=utc_stamp())

    def keep() -> None:
        body = doc.to_dict()
        keep_document(str(out / "bisect.json"), body)
        keep_markdown(out / "bisect.md", render_markdown(doc))
        for path in copies:
            keep_document(path, body)

    keep()
    if culprit is not None and options.localize:
        # kept first, so that an interrupt while it measures where the culprit grew keeps the search's answer
        doc.localized, doc.localize_remarks = where_culprit_grew(repo, good, culprit, evidence, reports[culprit],
                                                                 options, out, progress)
        doc.seconds, doc.finished = round(time.monotonic() - started, 1), utc_stamp()
        keep()
    return doc


def where_culprit_grew(repo: str, good: str, culprit: str, evidence: list[CellEvidence], report: dict[str, Any],
                       options: AlertOptions, out: Path, progress: Callable[[str], None]
                       ) -> tuple[list[Localization] | None, list[str]]:
    """Where the culprit's worse StepTime cells grew against GOOD: StepPhases in pairs of those two commits,
    within one alert's --max-minutes, once the search is over (each step would have spent minutes on it).
    Descriptive: what goes wrong here is a remark, never a lost culprit."""
    worse = [c.cell for c in evidence]
    paces = [s.get("seconds_per_pair") or {} for s in report.get("stages", [])
             if s.get("stage") == 1 and s.get("design") != decide.UNPAIRED]
    try:
        localized, remarks = pairedalert.where_it_grew_between(
            repo, good, culprit, worse, paces[0] if paces else {}, options.max_minutes,
            (report.get("order_seed") or 0) + 2, out / "where-it-grew",
            progress=lambda line: progress(f"  {line}"), ratios={c.cell: (c.ratio, c.ci_low) for c in evidence})
    except Exception as exc:  # descriptive: the culprit stands
        return None, [f"where it grew: not measured, it failed: {type(exc).__name__}: {exc}"]
    return (localized or None), remarks


def _ratio(c: CellEvidence) -> str:
    if c.ratio is None:
        return "—"
    interval = f" [{c.ci_low:.3f}, {c.ci_high:.3f}]" if c.ci_low is not None and c.ci_high is not None else ""
    return f"{c.ratio:.3f}×{interval}"


def render_markdown(doc: BisectDocument) -> str:
    """bisect.md: the answer first, then every step with its evidence, then what it cost."""
    package = doc.package
    what = "version" if package else "commit"
    if doc.culprit:
        cells = "; ".join(f"{c.cell} {_ratio(c)}" for c in doc.culprit_evidence)
        name = f"**culprit: {package} {doc.culprit}**" if package else (
            f"**culprit: {doc.culprit[:10]}** {doc.culprit_subject}")
        head = f"{name} — against GOOD: {cells}"
    else:
        head = f"**{doc.verdict}** — {doc.note}"
    if package:
        span = (f"GOOD {package} {doc.good}, BAD {package} {doc.bad}: {doc.commits_in_range} released versions on "
                f"the range; {doc.note}.")
    else:
        span = (f"GOOD {doc.good[:10]} ({doc.good_rev}), BAD {doc.bad[:10]} ({doc.bad_rev}): "
                f"{doc.commits_in_range} commits on the range (first parent); {doc.note}.")
    lines = [head, "", span, "",
             f"| step | {what} | # on range | subject | answer | watched cells: candidate ÷ GOOD (time per step) "
             "[95 % interval] (stage) | minutes |", "|---|---|---|---|---|---|---|"]
    for k, s in enumerate(doc.steps):
        cells = "<br>".join(f"{c.cell}: {c.change} {_ratio(c)}" + (f" (stage {c.stage})" if c.stage else "")
                            + (f", {c.of_bad:.2f} of BAD's change" if c.of_bad is not None else "")
                            for c in s.cells) or "—"
        subject = s.subject.replace("|", "\\|")
        lines.append(f"| {k} | {s.commit if package else s.commit[:10]} | {s.index} | {subject} | **{s.answer}** | "
                     f"{cells} | {s.seconds / 60:.1f} |")
    each = "`<out>/step-N-<version>.json` (fitbench versions)" if package else "`<out>/step-N-<commit>/alert.md`"
    if doc.localized:
        lines += ["", *where_it_grew_lines([asdict(loc) for loc in doc.localized])]
    if doc.localize_remarks:
        lines += ["", *(f"> {remark}" for remark in doc.localize_remarks)]
    lines += ["", f"Cost: {len(doc.steps)} step(s), {doc.commits_measured} {what}(s) measured besides GOOD and "
              f"BAD, {doc.seconds / 60:.1f} min. Each step's report: {each}.", ""]
    return "\n".join(lines)

"""What `fitbench alert` is asked (AlertOptions), what it writes and how its exit status follows from it: the
alert.json document (its schema, fitbench/schemas/alert.schema.json, is built from these classes), one row per
cell, the stages, and the exit statuses a CI job acts on."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from fitbench import exits
from fitbench.errors import UsageError
from fitbench.regress import decide
from fitbench.regress.decide import DecisionSettings
from fitbench.regress.localize import Localization
from fitbench.regress.pairing import DESIGNS
from fitbench.report.document import Document

SCHEMA_VERSION = 4  # 3: unpaired only; 2: one stage, "unchanged", exit 0 when undecided; 1: asv's pooled verdicts
# The default set, chosen for signal: seconds per training step, per process, at batch 256 on every backend
# of the matrix (StepTime), the determinism tracks (exact 0/1: no statistics needed), and how many times fit
# traces its step with jit on (exact: any increase is a retrace). Batch 32 is on
# request (--bench 'StepTime'): docs/alerts.md has what it costs and how often it is decided here.
DEFAULT_BENCH = (r"StepTime\.time_step\(256\)|Determinism\.track_sequential_functional_identical"
                 r"|Determinism\.track_run_to_run_identical"
                 # fitbench's suite: (api, jit), functional with jit on; a user's (asv-init): (batch size)
                 r"|Traces\.track_step_traces\(('functional', True|\d+)\)")
DEFAULT_STAGES = 2
DEFAULT_MAX_MINUTES = 15.0  # the whole alert, what a CI job waits: the second stage shrinks, or is skipped, to fit
HIGHER_IS_BETTER = re.compile(r"track_samples_per_second|_identical$|track_jit_effective|track_efficiency"
                              r"|track_pct_of_peak")
# Deterministic tracks: one value per commit says it all, compared exactly (a trace count: fewer is better).
EXACT = re.compile(r"_identical$|_max_ulp$|track_jit_effective$|track_step_traces$")
EXIT_OK, EXIT_REGRESSION, EXIT_ERROR, EXIT_UNDECIDED = exits.OK, exits.FOUND, exits.ERROR, exits.UNDECIDED
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
    design: str | None = None  # alternate (default), duet or unpaired; None with --stored: as it was measured
    machines: tuple[str, ...] | None = None  # asv machine names: the one to store under, or the runners to combine
    results: tuple[str, ...] | None = None  # --stored: asv results folders of other runners to combine
    localize: bool = True  # where a worse StepTime grew (fitbench.regress.localize); bisect's steps do without

    def check(self) -> "AlertOptions":
        if self.processes is not None and self.processes < 2:
            raise UsageError(f"--processes must be at least 2 (a spread needs two), got {self.processes}")
        if self.stored and self.processes is not None:
            raise UsageError("--processes and --stored do not go together: stored results have the processes they had")
        if self.design is not None and self.design not in DESIGNS:
            raise UsageError(f"--design must be one of {', '.join(DESIGNS)}, got {self.design!r}")
        if self.stored and self.design is not None:
            raise UsageError("--design and --stored do not go together: stored results are decided as they were "
                             "measured (in pairs where a pairing record says so)")
        if not self.stored and self.results:
            raise UsageError("--results reads other runners' stored results: it goes with --stored")
        if not self.stored and self.machines and len(self.machines) > 1:
            raise UsageError("a live alert stores its results under one --machine; several go with --stored")
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
    level: float | None = None  # what p_adjusted was held against at the deciding stage (settings.change_level)
    stage: int | None = None  # the stage whose processes (all stages up to it) decided the cell
    processes_base: int | None = None  # processes that gave usable values, all stages
    processes_head: int | None = None
    processes_requested: int | None = None  # per commit, all stages this cell ran in (None: --stored)
    processes_dropped: list[int] = field(default_factory=list)  # [base, head]: a sample not finite or not > 0
    processes_missing: list[int] = field(default_factory=list)  # [base, head]: asked for, never came back
    remarks: list[str] = field(default_factory=list)  # what happened on the way (a lost stage, a bad split)
    stage_processes: list[list[int]] = field(default_factory=list)  # [[base, head] per stage]
    second_stage: str | None = None  # "ran", or why the cell got none
    between_process_cv: float | None = None  # log-SD of per-process values (unpaired: the one behind detectable)
    cv_source: str | None = None  # calibration | this comparison
    observed_cv: float | None = None
    min_detectable_change: float | None = None
    higher_is_better: bool = False
    failed_on: list[str] = field(default_factory=list)
    backend: str | None = None
    note: str = ""
    design: str | None = None  # alternate | duet (pairs) | unpaired (two groups of processes); None: not tested
    pairs: int | None = None  # pairs the decision used (a pair is one process of each commit)
    pair_cv: float | None = None  # log-SD of the per-pair ratios: the spread the paired decision faced
    runners: dict[str, int] = field(default_factory=dict)  # pairs (or processes per commit) from each runner
    # the margin it was decided at: --threshold, or --compile-threshold (compile time); documents before it lack it
    threshold: float | None = field(default=None, metadata={"optional": True})

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
    design: str = "unpaired"  # alternate | duet: pairs of warm workers; unpaired: asv's own processes
    pairs_failed: dict[str, int] = field(default_factory=dict)  # backend -> pairs dropped (a worker failed)
    seconds_per_pair: dict[str, float] = field(default_factory=dict)  # backend -> median wall time of a pair


@dataclass
class AlertDocument(Document):
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
    design: str = field(default="unpaired", metadata={"doc": "alternate | duet: the time cells were measured in "
                                                            "pairs; unpaired: as two groups of asv processes; "
                                                            "stored: as the stored results say"})
    runners: list[str] = field(default_factory=list, metadata={"doc": "the asv machines whose results were decided"})
    remarks: list[str] = field(default_factory=list, metadata={"doc": "what the reader should know of how it "
                                                                      "was measured"})
    comparisons: list[Comparison] = field(default_factory=list)
    exit_status: int = EXIT_ERROR
    verdict: str = VERDICTS[EXIT_ERROR]
    tested_cells: int | None = field(default=None, metadata={"optional": True})
    seconds: float | None = field(default=None, metadata={"optional": True})
    error: str | None = field(default=None, metadata={"optional": True})
    asv_errors: list[str] | None = field(default=None, metadata={"optional": True,
                                                                 "doc": "asv's exception lines, when a cell failed"})
    localized: list[Localization] | None = field(default=None, metadata={
        "optional": True, "doc": "where a worse StepTime cell's time went: its step's phases in pairs "
                                 "(fitbench.regress.localize); no bearing on the exit status"})
    command: str = "alert"
    schema_version: int = SCHEMA_VERSION

    def finish(self, status: int) -> None:
        self.exit_status, self.verdict = status, VERDICTS[status]


def is_exact(key: str) -> bool:
    """A cell ("module.Class.method(params) [backend]") decided by its one value per commit, not by a test:
    it does not count in the Holm family the plan sizes its processes or pairs for."""
    return bool(EXACT.search(key.split(" [")[0].split("(")[0]))


def finite(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def pct(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return "∞" if math.isinf(value) else f"{100 * value:.1f} %"


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

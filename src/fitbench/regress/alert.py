"""`fitbench alert BASE HEAD`: asv runs the benchmarks on both commits, interleaved, several processes
each; fitbench decides what got worse with the process as the unit (fitbench.regress.decide), and writes
what a CI job needs: a Markdown report for the pull request, the same as JSON, and an exit status.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fitbench.errors import UsageError
from fitbench.regress import asvdata, decide
from fitbench.regress.calibration import load_calibration

SCHEMA_VERSION = 2  # 1: asv's pooled-sample verdicts (before per-process statistics)

# The default set, chosen for signal: seconds per training step, per process, at batch 256 on every backend
# of the matrix (StepTime), and the determinism tracks (exact 0/1: no statistics needed). Batch 32 is left
# out: on a 2-core machine its between-process spread would need dozens of processes per commit to see
# 10 % (docs/alerts.md measures it); ask for it with --bench 'StepTime'.
DEFAULT_BENCH = (r"StepTime\.time_step\(256\)|Determinism\.track_sequential_functional_identical"
                 r"|Determinism\.track_run_to_run_identical")
DEFAULT_ALPHA = 0.01  # family-wise: P(any false alarm in one alert) when nothing changed
DEFAULT_THRESHOLD = 0.10  # the change every cell must be able to detect, else it is inconclusive
DEFAULT_MIN_CHANGE = 0.05  # a significant change smaller than this is not called a regression
DEFAULT_PROCESSES = 10  # processes per commit when there is no calibration on this machine
PLANNING_POWER = 0.9  # the calibration picks enough processes to see the threshold in 9 of 10 alerts
MAX_AUTO_PROCESSES = 20
HIGHER_IS_BETTER = re.compile(r"track_samples_per_second|_identical$|track_jit_effective|track_efficiency"
                              r"|track_pct_of_peak")
# Deterministic tracks: one value per commit says it all, compared exactly.
EXACT = re.compile(r"_identical$|_max_ulp$|track_jit_effective$")
EXIT_OK, EXIT_REGRESSION, EXIT_ERROR = 0, 1, 2


@dataclass(frozen=True)
class AlertSettings:
    alpha: float = DEFAULT_ALPHA
    threshold: float = DEFAULT_THRESHOLD
    min_change: float = DEFAULT_MIN_CHANGE
    confidence: float = 0.95

    def check(self) -> "AlertSettings":
        if not 0 < self.alpha < 1:
            raise UsageError(f"--alpha must be between 0 and 1, got {self.alpha}")
        if not 0 < self.threshold < 10:
            raise UsageError(f"--threshold must be a relative change above 0 (0.10 = 10 %), got {self.threshold}")
        if not 0 <= self.min_change <= self.threshold:
            raise UsageError(f"--min-change must be between 0 and --threshold ({self.threshold}), "
                             f"got {self.min_change}")
        return self


@dataclass
class Comparison:
    """One benchmark cell on the base and the head commit, and what the alert says of it."""

    benchmark: str
    params: dict[str, str]
    unit: str | None
    before: float | None  # median of the per-process values (or asv's value where there are none)
    after: float | None
    change: str  # worse | better | unchanged | inconclusive | failed | skipped
    method: str = ""  # how it was decided
    ratio: float | None = None  # after / before
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None  # Holm over every tested cell of this alert
    processes_base: int | None = None
    processes_head: int | None = None
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


def _finite(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _exact(cell_b: asvdata.CellResult, cell_a: asvdata.CellResult, higher_is_better: bool) -> tuple[str, float | None]:
    before, after = cell_b.value, cell_a.value
    ratio = after / before if before else None
    if before == after:
        return decide.UNCHANGED, ratio
    return (decide.WORSE if (after < before) == higher_is_better else decide.BETTER), ratio


def compare(before: dict[str, asvdata.CellResult], after: dict[str, asvdata.CellResult],
            settings: AlertSettings = AlertSettings(),
            calibrated_log_sd: dict[str, float] | None = None) -> list[Comparison]:
    """Every cell of either commit, decided. Pure: asv's stored results in, rows out."""
    rows: dict[str, Comparison] = {}
    tested: dict[str, tuple[list[float], list[float]]] = {}
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
            row.before, row.after, row.change = value_b, value_a, "failed"
            continue
        if not (_finite(value_b) and _finite(value_a)):
            row.before, row.after, row.change = value_b, value_a, "skipped"
            continue
        if EXACT.search(ref.benchmark):
            row.before, row.after = value_b, value_a
            row.change, row.ratio = _exact(b, a, hib)
            row.method = "exact: a deterministic track, one value per commit"
            continue
        values_b, values_a = b.process_values(), a.process_values()
        if not values_b or not values_a or len(values_b) < 2 or len(values_a) < 2:
            row.before, row.after = value_b, value_a
            row.ratio = value_a / value_b if value_b else None
            row.change = decide.INCONCLUSIVE
            row.method = "no per-process values"
            row.note = ("fewer than 2 processes per commit, or samples that do not split into processes "
                        "(a track benchmark, or a `repeat` that is not a fixed count)")
            continue
        row.before, row.after = statistics.median(values_b), statistics.median(values_a)
        tested[key] = (values_b, values_a)
    decisions = decide.decide(tested, alpha=settings.alpha, threshold=settings.threshold,
                              min_change=settings.min_change, confidence=settings.confidence,
                              calibrated_log_sd=calibrated_log_sd,
                              higher_is_better={k: rows[k].higher_is_better for k in tested})
    for key, d in decisions.items():
        row = rows[key]
        row.change, row.ratio, row.confidence = d.change, d.ratio, d.confidence
        row.ci_low, row.ci_high = d.ci_low, d.ci_high
        row.p_value, row.p_adjusted = d.p_value, d.p_adjusted
        row.processes_base, row.processes_head = d.processes_base, d.processes_head
        row.between_process_cv, row.cv_source, row.observed_cv = d.log_sd, d.log_sd_source, d.observed_log_sd
        row.min_detectable_change = d.min_detectable_change
        row.method = "exact rank-sum on per-process medians, Holm"
        if d.change == decide.INCONCLUSIVE:
            row.note = inconclusive_note(d, settings)
    return list(rows.values())


def inconclusive_note(d: decide.CellDecision, settings: AlertSettings) -> str:
    """Why a cell is inconclusive, in the reader's terms."""
    if d.min_detectable_change > settings.threshold:
        return (f"too noisy: could detect {_pct(d.min_detectable_change)} or more with {d.processes_base} "
                f"processes, not {_pct(settings.threshold)}")
    return (f"the interval reaches past ±{_pct(settings.threshold)} without a significant change after Holm "
            f"(spread seen here {_pct(d.observed_log_sd)})")


def exit_status(comparisons: list[Comparison]) -> int:
    if any(c.change == "failed" for c in comparisons):
        return EXIT_ERROR
    return EXIT_REGRESSION if any(c.change == decide.WORSE for c in comparisons) else EXIT_OK


# ---------- rendering ----------

def _pct(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return "∞" if math.isinf(value) else f"{100 * value:.1f} %"


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


def render_markdown(report: dict[str, Any]) -> str:
    """A pull-request comment: one row per cell with its statistics; failures listed."""
    rows = [Comparison(**c) for c in report["comparisons"]]
    kinds = ("worse", "better", "failed", "inconclusive", "unchanged", "skipped")
    by = {k: [c for c in rows if c.change == k] for k in kinds}
    s = report.get("settings", {})
    lines = [f"## fitbench alert: `{report['base'][:10]}` → `{report['head'][:10]}`", "",
             (f"{report.get('processes', '?')} processes per commit ({report.get('processes_source', '')}), "
              "base and head interleaved" if report.get("processes") is not None else
              "Processes per commit: what asv stored (no new run; the `processes` column)")
             + "; each process's median is one observation. A cell is worse when the "
             f"exact rank-sum test on those is significant at family-wise α={s.get('alpha')} (Holm over "
             f"{report.get('tested_cells', '?')} cells) and the change is at least {_pct(s.get('min_change'))}; "
             f"unchanged only where the cell could detect {_pct(s.get('threshold'))}, else inconclusive. "
             f"Benchmarks `{report['bench']}`; "
             f"{'backends ' + ', '.join(report['backends']) + '; ' if report.get('backends') else ''}"
             f"machine `{report.get('machine', '?')}`; calibration: {report.get('calibration') or 'none'}.", "",
             f"**{len(by['worse'])} regression(s)**, {len(by['better'])} improvement(s), {len(by['failed'])} failed, "
             f"{len(by['inconclusive'])} inconclusive, {len(by['unchanged'])} unchanged, {len(by['skipped'])} n/a.",
             ""]

    def table(title: str, items: list[Comparison]) -> None:
        if not items:
            return
        lines.extend([f"### {title}", "",
                      "| benchmark | parameters | before | after | ratio [95 % CI] | processes | between-process CV | "
                      "detectable | p (Holm) | note |", "|---|---|---|---|---|---|---|---|---|---|"])
        for c in items:
            procs = f"{c.processes_base} + {c.processes_head}" if c.processes_base else "–"
            cv = f"{_pct(c.between_process_cv)} ({c.cv_source})" if c.between_process_cv is not None else "–"
            p = f"{c.p_adjusted:.2g}" if c.p_adjusted is not None else "–"
            lines.append(f"| `{c.benchmark}` | {_params_text(c.params, c.backend)} | {human(c.before, c.unit)} | "
                         f"{human(c.after, c.unit)} | {_ratio_text(c)} | {procs} | {cv} | "
                         f"{_pct(c.min_detectable_change)} | {p} | {c.note or c.method} |")
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
    table("Inconclusive (too noisy to say; not a pass)", by["inconclusive"])
    if by["unchanged"]:
        lines.extend(["<details><summary>Unchanged</summary>", ""])
        table("Unchanged", by["unchanged"])
        lines.extend(["</details>", ""])
    return "\n".join(lines)


def write_report(out_dir: str, report: dict[str, Any]) -> tuple[Path, Path]:
    from fitbench.report.io import write_json_atomic, write_text_atomic

    out = Path(out_dir)
    md = out / "alert.md"
    write_json_atomic(str(out / "alert.json"), report)
    write_text_atomic(md, render_markdown(report))
    return md, out / "alert.json"


# ---------- the command ----------

def choose_processes(requested: int | None, calibration: dict[str, float] | None, cells: list[str],
                     settings: AlertSettings) -> tuple[int, str]:
    """(processes per commit, why). Asked for: that. Else from this machine's calibration: enough for every
    calibrated cell to detect the threshold under Holm with PLANNING_POWER, capped at MAX_AUTO_PROCESSES.
    Else the default."""
    if requested is not None:
        return requested, "asked for"
    spreads = [sd for key, sd in (calibration or {}).items() if key in cells and math.isfinite(sd)]
    if spreads:
        n = decide.processes_for(spreads, settings.threshold, settings.alpha, power=PLANNING_POWER, floor=3,
                                 limit=MAX_AUTO_PROCESSES)
        if n is None:
            return MAX_AUTO_PROCESSES, (f"calibration: a cell would need more than {MAX_AUTO_PROCESSES} to see "
                                        f"{_pct(settings.threshold)}; capped")
        return n, (f"from this machine's calibration: {_pct(settings.threshold)} seen with "
                   f"{PLANNING_POWER:.0%} power")
    return DEFAULT_PROCESSES, "default: no calibration on this machine (fitbench calibrate)"


STORED_SOURCE = "asv's stored results (no new run)"


def alert(repo: str, base_rev: str, head_rev: str, bench: str, out_dir: str, backends: list[str] | None = None,
          settings: AlertSettings = AlertSettings(), processes: int | None = None,
          stored: bool = False) -> tuple[int, dict[str, Any]]:
    """The whole `fitbench alert BASE HEAD`: validate, run asv, decide, write alert.md/alert.json.

    stored=True decides on what `asv run --record-samples` already stored for both commits on this machine,
    without running asv (e.g. one `asv run --interleave-rounds` over a range of commits, then one decision
    per pair); the processes are then whatever that run had."""
    asvdata.require_asv()
    settings.check()
    if processes is not None and processes < 2:
        raise UsageError(f"--processes must be at least 2 (a spread needs two), got {processes}")
    if stored and processes is not None:
        raise UsageError("--processes and --stored do not go together: stored results have the processes they had")
    repo = asvdata.repo_root(repo)
    base, head = asvdata.resolve_commit(repo, base_rev), asvdata.resolve_commit(repo, head_rev)
    selected = asvdata.select_benchmarks(repo, bench)
    environments = asvdata.backend_environments(repo, backends)
    machine = asvdata.machine_name()
    calibration = load_calibration(repo, machine)
    calibrated = calibration.log_sds() if calibration else None
    keys = [asvdata.cell_key(name, b) for name in selected for b in environments]
    n, why = (None, STORED_SOURCE) if stored else choose_processes(processes, calibrated, keys, settings)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    asv_status = None if n is None else asvdata.run_asv(repo, [base, head], bench, n, out / "asv.log",
                                                        list(environments.values()))
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "command": "alert", "base": base, "head": head, "base_rev": base_rev,
        "head_rev": head_rev, "bench": bench, "selected": selected, "settings": asdict(settings),
        "processes": n, "processes_source": why, "backends": list(environments),
        "environments": list(environments.values()), "machine": machine,
        "calibration": calibration.describe() if calibration else None, "asv_exit_status": asv_status}
    results = asvdata.read_results(repo, [base, head], bench, list(environments.values()), machine)
    before, after = results[base], results[head]
    if not before or not after:
        missing = " and ".join(name for name, cells in (("base", before), ("head", after)) if not cells)
        where = "run `asv run --record-samples` on it first" if stored else "see asv.log"
        report.update(comparisons=[], error=f"asv recorded no results for the {missing} commit ({where})")
        write_report(out_dir, report)
        return EXIT_ERROR, report
    rows = compare(before, after, settings, calibrated)
    report["comparisons"] = [asdict(c) for c in rows]
    report["tested_cells"] = sum(1 for c in rows if c.p_value is not None)
    if any(c.change == "failed" for c in rows) and not stored:
        report["asv_errors"] = asvdata.errors_in_log((out / "asv.log").read_text())
    status = exit_status(rows)
    report["exit_status"] = status
    write_report(out_dir, report)
    return status, report


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

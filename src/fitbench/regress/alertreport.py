"""What `fitbench alert` prints: the Markdown for a pull request (the verdict first, a row per cell), the report
files, and the regressions of a published asv report (--from-html)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from fitbench.errors import UsageError
from fitbench.regress import decide
from fitbench.regress.alertdoc import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_REGRESSION,
    FAILED,
    SKIPPED,
    AlertDocument,
    Comparison,
    exit_status,
    finite,
    pct,
)


def human(value: float | None, unit: str | None) -> str:
    if value is None:
        return "failed"
    if not finite(value):
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


def _how(report: dict[str, Any]) -> str:
    """How the alert measured: the design, the stages, what each took."""
    stages = report.get("stages") or []
    if not stages:
        runners = report.get("runners") or []
        several = f" on {len(runners)} runners, each compared only with itself" if len(runners) > 1 else ""
        return (f"Decided on what was stored{several} (no new run): the time cells in pairs where a pairing record "
                "says they were measured so, else each commit's processes (the `design` column).")
    parts = []
    for st in stages:
        if st.get("design", "unpaired") == "unpaired":
            what = f"asv, {st['processes']} process{'es' if st['processes'] != 1 else ''} per commit"
        else:
            failed = sum((st.get("pairs_failed") or {}).values())
            what = (f"{st['processes']} {st['design']} pairs per environment"
                    + (f" ({failed} failed)" if failed else ""))
        parts.append(f"stage {st['stage']}: {what} for {len(st['cells'])} cell(s) at family-wise α "
                     f"{st['level']:.3g}{' a direction' if (report.get('settings') or {}).get('one_sided') else ''}, "
                     f"{st['seconds'] / 60:.1f} min")
    design = report.get("design", "unpaired")
    unit = ("A pair is one fresh process of each commit, both warm, measured window by window in turns "
            "(alternate) or at once on their own CPUs (duet), which commit leads drawn at random; its value is "
            "the median over its rounds of head's window over base's, and the pairs' ratios are the observations "
            "(exact signed-rank)"
            if design in ("alternate", "duet") else
            "Base and head interleaved by asv, which runs first drawn per environment; each process's median is "
            "one observation (exact rank-sum)")
    return (f"Planned {' + '.join(map(str, report.get('processes_planned', [])))} "
            f"({report.get('processes_source', '')}); {'; '.join(parts)}. {unit}; order seed "
            f"{report.get('order_seed')}.")


def _design_text(c: Comparison) -> str:
    if c.pairs:
        runners = f", {len(c.runners)} runners" if len(c.runners) > 1 else ""
        return f"{c.design}: {c.pairs} pairs ({c.stage}{runners})"
    if c.processes_base:
        return f"unpaired: {c.processes_base} + {c.processes_head} ({c.stage})"
    return "–"


def _spread_text(c: Comparison) -> str:
    if c.pairs:
        return f"{pct(c.pair_cv)} per pair ({pct(c.between_process_cv)} between processes)"
    if c.between_process_cv is not None:
        return f"{pct(c.between_process_cv)} between processes ({c.cv_source})"
    return "–"


def render_markdown(report: dict[str, Any]) -> str:
    """A pull-request comment: the verdict first, then one row per cell with its statistics; failures listed."""
    rows = [Comparison(**c) for c in report["comparisons"]]
    kinds = (decide.WORSE, decide.BETTER, FAILED, decide.INCONCLUSIVE, decide.EQUIVALENT, SKIPPED)
    by = {k: [c for c in rows if c.change == k] for k in kinds}
    s = report.get("settings", {})
    # compile-time cells decided at their own margin: the margins say so wherever they are stated
    wider = sorted({c.threshold for c in rows if c.threshold is not None and c.threshold != s.get("threshold")})
    margin = pct(s.get("threshold")) + "".join(f", compile time ±{pct(t)}" for t in wider)
    lines = [headline(report), "",
             f"**{len(by['worse'])} worse**, {len(by['better'])} better, {len(by['equivalent'])} equivalent "
             f"(within ±{margin}), {len(by['inconclusive'])} inconclusive, {len(by['failed'])} "
             f"failed, {len(by['skipped'])} n/a.", "", _how(report), "",
             f"A cell is worse when its exact test is significant at family-wise α={s.get('alpha')} "
             f"{'in that direction (better likewise, at its own α)' if s.get('one_sided') else '(worse or better)'} "
             f"(Holm over {report.get('tested_cells', '?')} cells, split across {report.get('stages_planned', 1)} "
             f"stage(s)) and "
             f"the change is at least {pct(s.get('min_change'))}; equivalent when two one-sided tests put it within "
             f"±{margin} at family-wise α={s.get('equivalence_alpha')}; else inconclusive, which "
             f"is not a pass. Benchmarks `{report['bench']}`; "
             f"{'backends ' + ', '.join(report['backends']) + '; ' if report.get('backends') else ''}"
             f"machine{'s' if len(report.get('runners') or []) > 1 else ''} "
             f"`{'`, `'.join(report.get('runners') or [report.get('machine', '?')])}`; "
             f"calibration: {report.get('calibration') or 'none'}.", ""]
    lines += [f"> {remark}" for remark in report.get("remarks") or []] + ([""] if report.get("remarks") else [])

    def table(title: str, items: list[Comparison]) -> None:
        if not items:
            return
        lines.extend([f"### {title}", "",
                      "| benchmark | parameters | before | after | ratio [95 % CI] | design: processes (stage) | "
                      "spread | detectable | p (Holm) | p equivalent (Holm) | note |",
                      "|---|---|---|---|---|---|---|---|---|---|---|"])
        for c in items:
            procs = _design_text(c)
            cv = _spread_text(c)
            p = f"{c.p_adjusted:.2g}" if c.p_adjusted is not None else "–"
            p_eq = f"{c.p_equivalence_adjusted:.2g}" if c.p_equivalence_adjusted is not None else "–"
            note = "; ".join(filter(None, [c.note or c.method,
                                           (f"no second stage: {c.second_stage}" if c.second_stage
                                            and c.second_stage not in ("ran", "decided at stage 1") else "")]))
            lines.append(f"| `{c.benchmark}` | {_params_text(c.params, c.backend)} | {human(c.before, c.unit)} | "
                         f"{human(c.after, c.unit)} | {_ratio_text(c)} | {procs} | {cv} | "
                         f"{pct(c.min_detectable_change)} | {p} | {p_eq} | {note} |")
        lines.append("")

    table("Regressions", by["worse"])
    lines.extend(where_it_grew_lines(report.get("localized") or []))
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
        table(f"Equivalent (within ±{margin}; the exact tracks: identical)", by["equivalent"])
        lines.extend(["</details>", ""])
    return "\n".join(lines)


def _ms(value: float | None, signed: bool = False) -> str:
    return "–" if value is None else (f"{value:+.2f}" if signed else f"{value:.2f}")


def where_it_grew_lines(localized: list[dict[str, Any]]) -> list[str]:
    """Per worse StepTime cell, its step's phases at both commits and each phase's change (ms per step) with its
    interval; the phases whose interval lies above zero named first."""
    lines: list[str] = []
    for loc in localized:
        grew = (", ".join(loc["grew"]) or "no phase alone (no interval above zero)" if loc["pairs"]
                else "not measured (the note below says why)")
        lines += [f"### Where it grew: `{loc['cell']}`", "",
                  f"Grew: **{grew}**. The step cut into the configurations of `fitbench breakdown`, measured in "
                  f"{loc['pairs']} pair(s) of the same commits ({loc['failed_pairs']} failed, {loc['seconds']:.0f} s); "
                  f"`fit` (what StepTime times) changed by {_ms(loc.get('fit_change_ms'), True)} ms per step. "
                  f"Descriptive: no bearing on the exit status.", "",
                  f"| phase | measured as | before (ms/step) | after (ms/step) | change (ms/step) "
                  f"[{100 * loc.get('confidence', 0.95):.1f} % CI, the phases together 95 %] |",
                  "|---|---|---|---|---|"]
        for p in loc["phases"]:
            interval = (f" [{_ms(p['low_ms'], True)}, {_ms(p['high_ms'], True)}]" if p.get("low_ms") is not None
                        else "")
            mark = "**" if p["grew"] else ""
            lines.append(f"| {mark}{p['name']}{mark} | {p['measured_as']} | {_ms(p['base_ms'])} | "
                         f"{_ms(p['head_ms'])} | {mark}{_ms(p['change_ms'], True)}{mark}{interval} |")
        if loc.get("note"):
            lines += ["", f"> {loc['note']}"]
        lines.append("")
    return lines


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


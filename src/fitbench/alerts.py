"""`fitbench alert`: run chosen asv benchmarks on two commits and say, with asv's statistics, what got worse.

asv does the running (`asv continuous`: both commits, interleaved rounds, raw samples recorded) and the
deciding (`--factor` and a Mann-Whitney U test on the samples, asv's own `_is_result_better`). fitbench adds
what a CI job needs on top: the direction of each metric (samples/s and the determinism tracks are better
when higher), every benchmark that failed on either commit (asv's compare hides those), a Markdown report
ready for a pull-request comment, the same as JSON, and an exit status.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fitbench.errors import UsageError

# A fast subset: two fit cells (XLA off/on) and the Sequential/Functional bit-identity track.
DEFAULT_BENCH = (r"time_fit_10_steps\('functional', (False|True), 'cpu', 32\)"
                 r"|Determinism\.track_sequential_functional_identical")
DEFAULT_FACTOR = 1.10
HIGHER_IS_BETTER = re.compile(r"track_samples_per_second|_identical$|track_jit_effective|track_efficiency"
                              r"|track_pct_of_peak")
EXIT_OK, EXIT_REGRESSION, EXIT_ERROR = 0, 1, 2


@dataclass
class Comparison:
    """One benchmark cell (benchmark x parameter combination) on the base and the head commit."""

    benchmark: str
    params: dict[str, str]
    unit: str | None
    before: float | None
    after: float | None
    change: str  # worse | better | unchanged | failed | skipped
    ratio: float | None = None  # after / before
    higher_is_better: bool = False
    significance: str = ""
    failed_on: list[str] = field(default_factory=list)
    backend: str | None = None  # the environment's KERAS_BACKEND (asv.conf.json's matrix axis)

    @property
    def label(self) -> str:
        on = f" [{self.backend}]" if self.backend else ""
        return self.benchmark + (f"({', '.join(self.params.values())})" if self.params else "") + on


# ---------- pure: decide and render ----------

def _finite(value: float | None) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def significance(stats_b: Any, samples_b: Any, stats_a: Any, samples_a: Any) -> str:
    """How asv can tell the two apart: the test it will use for these samples."""
    from asv import _stats

    if samples_b and samples_a:
        a = [x for x in samples_b if _finite(x)]
        b = [x for x in samples_a if _finite(x)]
        if a and b and 1 / math.comb(len(a) + len(b), min(len(a), len(b))) < 0.002:
            _, p = _stats.mann_whitney_u(a, b)
            return f"Mann-Whitney U p={p:.2g} ({len(a)} vs {len(b)} samples)"
    if stats_b and stats_a and stats_b.get("ci_99_a") is not None:
        return "99% confidence intervals"
    return "factor only (one value per commit)"


def classify(name: str, unit: str | None, before: float | None, after: float | None, ss_before: Any,
             ss_after: Any, factor: float) -> tuple[str, float | None, str]:
    """(change, ratio, significance) for one cell, with asv's rule and the metric's direction."""
    from asv.commands.compare import _is_result_better

    if before is None or after is None:
        return "failed", None, ""
    if not (_finite(before) and _finite(after)):
        return "skipped", None, ""
    ratio = after / before if before else (math.inf if after else 1.0)
    sig = significance(ss_before[0], ss_before[1], ss_after[0], ss_after[1]) if ss_before and ss_after else ""
    if HIGHER_IS_BETTER.search(name):
        # asv's rule reads "a is better than b" as a < b / factor: swap roles for higher-is-better metrics
        worse = _is_result_better(after, before, ss_after, ss_before, factor)
        better = _is_result_better(before, after, ss_before, ss_after, factor)
    else:
        worse = _is_result_better(before, after, ss_before, ss_after, factor)
        better = _is_result_better(after, before, ss_after, ss_before, factor)
    return ("worse" if worse else "better" if better else "unchanged"), ratio, sig


def exit_status(comparisons: list[Comparison]) -> int:
    if any(c.change == "failed" for c in comparisons):
        return EXIT_ERROR
    return EXIT_REGRESSION if any(c.change == "worse" for c in comparisons) else EXIT_OK


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


def render_markdown(report: dict[str, Any]) -> str:
    """A pull-request comment: one row per changed benchmark, failures listed, the rest folded away."""
    rows = [Comparison(**c) for c in report["comparisons"]]
    by = {k: [c for c in rows if c.change == k] for k in ("worse", "better", "failed", "unchanged", "skipped")}
    lines = [f"## fitbench alert: `{report['base'][:10]}` → `{report['head'][:10]}`", "",
             f"asv continuous, factor {report['factor']:.2f}, asv's statistics (Mann-Whitney U on raw samples "
             f"where there are enough); benchmarks `{report['bench']}`; "
             f"{'backends ' + ', '.join(report['backends']) + '; ' if report.get('backends') else ''}"
             f"machine `{report.get('machine', '?')}`.", "",
             f"**{len(by['worse'])} regression(s)**, {len(by['better'])} improvement(s), {len(by['failed'])} failed, "
             f"{len(by['unchanged'])} unchanged, {len(by['skipped'])} n/a.", ""]

    def table(title: str, items: list[Comparison]) -> None:
        if not items:
            return
        lines.extend([f"### {title}", "", "| benchmark | parameters | before | after | ratio | significance |",
                      "|---|---|---|---|---|---|"])
        for c in items:
            ratio = "–" if c.ratio is None else f"{c.ratio:.2f}×"
            lines.append(f"| `{c.benchmark}` | {_params_text(c.params, c.backend)} | {human(c.before, c.unit)} | "
                         f"{human(c.after, c.unit)} | {ratio} | {c.significance or '–'} |")
        lines.append("")

    table("Regressions", by["worse"])
    table("Improvements", by["better"])
    if by["failed"]:
        lines.extend(["### Failed (the benchmark errored; asv's own comparison leaves these out)", ""])
        lines.extend(f"- `{c.label}`: failed on {' and '.join(c.failed_on)}" for c in by["failed"])
        lines.append("")
        if report.get("asv_errors"):
            lines.extend(["asv's log (`asv.log` beside this report) shows:", ""])
            lines.extend(f"- `{e}`" for e in report["asv_errors"])
            lines.append("")
    if by["unchanged"]:
        lines.extend(["<details><summary>Unchanged</summary>", ""])
        table("Unchanged", by["unchanged"])
        lines.extend(["</details>", ""])
    return "\n".join(lines)


def write_report(out_dir: str, report: dict[str, Any]) -> tuple[Path, Path]:
    from fitbench.report import write_json_atomic

    out = Path(out_dir)
    md = out / "alert.md"
    write_json_atomic(str(out / "alert.json"), report)
    tmp = out / ".alert.md.tmp"
    tmp.write_text(render_markdown(report))
    os.replace(tmp, md)
    return md, out / "alert.json"


# ---------- asv-facing ----------

def _require_asv() -> None:
    try:
        import asv  # noqa: F401
    except ImportError:
        raise UsageError("asv is not installed: pip install -e '.[test]' (or pip install asv)") from None


def _git(repo: str, *args: str) -> str:
    proc = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UsageError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"git {' '.join(args)} failed")
    return proc.stdout.strip()


def resolve_commit(repo: str, rev: str) -> str:
    proc = subprocess.run(["git", "-C", repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise UsageError(f"unknown commit {rev!r} in {repo}")
    return proc.stdout.strip()


def list_benchmark_cells(repo: str) -> list[str]:
    """Every `module.Class.method(param, ...)` name that asv's `-b` regex is matched against.

    The suite is imported (its modules are thin: importing them loads no framework) and the names are
    spelled as asv spells them, each parameter value as its repr.
    """
    import importlib
    import inspect

    sys.path.insert(0, repo)
    try:
        names = []
        for path in sorted((Path(repo) / "benchmarks").glob("bench_*.py")):
            module = importlib.import_module(f"benchmarks.{path.stem}")
            for cls_name, cls in inspect.getmembers(module, inspect.isclass):
                if cls.__module__ != module.__name__:
                    continue
                combos = list(itertools.product(*getattr(cls, "params", []))) if getattr(cls, "params", None) else [None]
                for fn_name in sorted(n for n in dir(cls) if re.match(r"(time|track|peakmem|mem|timeraw)_", n)):
                    base = f"{path.stem}.{cls_name}.{fn_name}"
                    names += [base if c is None else f"{base}({', '.join(map(repr, c))})" for c in combos]
        return names
    finally:
        sys.path.remove(repo)


def select_benchmarks(repo: str, regex: str) -> list[str]:
    """The benchmark cells `--bench` selects; none is bad input."""
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        raise UsageError(f"--bench is not a valid regular expression: {exc}") from None
    chosen = [c for c in list_benchmark_cells(repo) if pattern.search(c)]
    if not chosen:
        raise UsageError(f"--bench {regex!r} selects no benchmark in {repo}/benchmarks")
    return chosen


def _asv_config(repo: str) -> Any:
    from asv.config import Config

    conf = Config.load(os.path.join(repo, "asv.conf.json"))
    for attr in ("results_dir", "benchmark_dir", "html_dir", "env_dir"):  # asv resolves these against the cwd
        setattr(conf, attr, os.path.join(repo, getattr(conf, attr)))
    return conf


def backend_environments(repo: str, backends: list[str] | None) -> dict[str, str]:
    """{KERAS_BACKEND: asv environment name} for the backends asked for (None: every one in the matrix).

    asv's `-E` takes an environment's full name, which carries its requirements and environment variables;
    asv builds the names itself from asv.conf.json's matrix."""
    from asv.environment import get_environments

    envs = {env.env_vars.get("KERAS_BACKEND", "tensorflow"): env.name
            for env in get_environments(_asv_config(repo), None)}
    if not envs:
        raise UsageError(f"asv finds no environment for {repo}/asv.conf.json (is virtualenv installed?)")
    if backends is None:
        return envs
    unknown = [b for b in backends if b not in envs]
    if unknown:
        raise UsageError(f"--backend {','.join(unknown)}: not in asv.conf.json's KERAS_BACKEND matrix "
                         f"({', '.join(envs)})")
    return {b: envs[b] for b in backends}


def run_asv_continuous(repo: str, base: str, head: str, regex: str, factor: float, log_path: Path,
                       environments: list[str] | None = None) -> int:
    """Both commits, interleaved rounds, raw samples; the log is kept beside the report."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    asv = [sys.executable, "-m", "asv"]
    subprocess.run([*asv, "machine", "--yes"], cwd=repo, env=env, capture_output=True)
    cmd = [*asv, "continuous", "--factor", str(factor), "--interleave-rounds", "--record-samples",
           "-a", "rounds=2", "--show-stderr", "-b", regex,
           *[arg for name in environments or [] for arg in ("-E", name)], base, head]
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        return subprocess.run(cmd, cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT).returncode


def compare_commits(repo: str, base: str, head: str, regex: str, factor: float,
                    environments: list[str] | None = None) -> dict[str, Any]:
    """Read asv's stored results for both commits and classify every selected cell."""
    from asv.benchmarks import Benchmarks
    from asv.commands.compare import unroll_result
    from asv.machine import Machine
    from asv.results import iter_results_for_machine_and_hash

    conf = _asv_config(repo)
    machine = Machine.get_unique_machine_name()
    benchmarks = Benchmarks.load(conf)  # units and parameter names, read once
    units = {name: b.get("unit") for name, b in benchmarks.items()}
    pattern = re.compile(regex)

    def cells(commit: str) -> dict[tuple[str, str], tuple[Any, Any, Any, list[Any]]]:
        out = {}
        for result in iter_results_for_machine_and_hash(conf.results_dir, machine, commit):
            if environments is not None and result.env_name not in environments:
                continue  # results of a backend this alert did not ask for (e.g. from an earlier asv run)
            for key in result.get_all_result_keys():
                params = result.get_result_params(key)
                unrolled = unroll_result(key, params, result.get_result_value(key, params),
                                         result.get_result_stats(key, params), result.get_result_samples(key, params))
                for (name, value, stats, samples), combo in zip(unrolled, itertools.product(*params) or [()]):
                    if pattern.search(name):
                        out[(name, result.env_name)] = (value, stats, samples, list(combo), key,
                                                        result.env_vars.get("KERAS_BACKEND"))
        return out

    before, after = cells(base), cells(head)
    if not before or not after:
        missing = " and ".join(n for n, c in (("base", before), ("head", after)) if not c)
        raise RuntimeError(f"asv recorded no results for the {missing} commit (see asv.log)")
    comparisons = []
    for cell in sorted(before.keys() | after.keys()):
        b, a = before.get(cell), after.get(cell)
        ref = b or a
        key, combo = ref[4], ref[3]
        param_names = list(benchmarks.get(key, {}).get("param_names", []))
        value_b, value_a = (b[0] if b else None), (a[0] if a else None)
        change, ratio, sig = classify(key, units.get(key), value_b, value_a,
                                      (b[1], b[2]) if b else None, (a[1], a[2]) if a else None, factor)
        comparisons.append(Comparison(
            benchmark=key, params=dict(zip(param_names, combo)), unit=units.get(key), before=value_b,
            after=value_a, change=change, ratio=ratio, higher_is_better=bool(HIGHER_IS_BETTER.search(key)),
            significance=sig, failed_on=[n for n, v in (("base", value_b), ("head", value_a)) if v is None],
            backend=ref[5]))
    return {"machine": machine, "comparisons": [asdict(c) for c in comparisons]}


def errors_in_log(log_text: str) -> list[str]:
    """The distinct exception lines asv printed (--show-stderr) for failing benchmarks; asv keeps no
    stderr in its result files, so the log is where they are."""
    found = [m.group(1).strip() for m in re.finditer(r"^[\s·]*((?:\w+\.)*\w+(?:Error|Exception): .*)$", log_text, re.M)]
    return list(dict.fromkeys(found))


def alert(repo: str, base_rev: str, head_rev: str, bench: str, factor: float, out_dir: str,
          backends: list[str] | None = None) -> tuple[int, dict[str, Any]]:
    """The whole `fitbench alert BASE HEAD`: validate, run asv, compare, write alert.md/alert.json."""
    _require_asv()
    if factor <= 1.0:
        raise UsageError(f"--factor must be greater than 1, got {factor}")
    repo = _git(repo, "rev-parse", "--show-toplevel")
    if not os.path.exists(os.path.join(repo, "asv.conf.json")):
        raise UsageError(f"no asv.conf.json in {repo}")
    base, head = resolve_commit(repo, base_rev), resolve_commit(repo, head_rev)
    report_cells = select_benchmarks(repo, bench)
    environments = backend_environments(repo, backends)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    asv_status = run_asv_continuous(repo, base, head, bench, factor, out / "asv.log", list(environments.values()))
    report: dict[str, Any] = {"command": "alert", "base": base, "head": head, "base_rev": base_rev,
                              "head_rev": head_rev, "bench": bench, "selected": report_cells, "factor": factor,
                              "backends": list(environments), "environments": list(environments.values()),
                              "asv_exit_status": asv_status}
    try:
        report.update(compare_commits(repo, base, head, bench, factor, list(environments.values())))
    except RuntimeError as exc:
        report.update(comparisons=[], error=str(exc))
        write_report(out_dir, report)
        return EXIT_ERROR, report
    if any(c["change"] == "failed" for c in report["comparisons"]):
        report["asv_errors"] = errors_in_log((out / "asv.log").read_text())
    status = exit_status([Comparison(**c) for c in report["comparisons"]])
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

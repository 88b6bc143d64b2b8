"""Everything fitbench reads from or asks of asv: configuration, environments, running, stored results.

asv runs the benchmarks and stores their samples; fitbench decides (fitbench.regress.decide). The calls
here are asv's documented Python objects (Config, Results, Benchmarks, get_environments, Machine) plus its
command line; asv is pinned below 0.7 in pyproject.toml because these module paths are not a stable API
(checked: asv 0.6.4 to 0.6.6).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from fitbench.errors import UsageError
from fitbench.processes.isolation import run_process_group
from fitbench.stacks import LEGACY_ENV, TF_KERAS

if TYPE_CHECKING:
    from fitbench.regress.decide import Grouped

ASV_EXTRA_HINT = "pip install 'fitbench[alert]' (or pip install 'asv>=0.6.4,<0.7' virtualenv)"

# How a process-level benchmark says, in its asv `version`, how many samples each of its processes gives:
# asv stores the version with every result, so the samples of a stored run are cut by what that run did,
# not by today's profile (benchmarks/common.py and fitbench.asvsuite write it).
LAYOUT = re.compile(r"samples-per-process=(\d+)")


def samples_per_process(version: str | None) -> int | None:
    """The samples each process gave, as the stored benchmark version records it; None if it does not."""
    match = LAYOUT.search(version or "")
    return int(match.group(1)) if match and int(match.group(1)) > 0 else None


def require_asv() -> None:
    try:
        import asv  # noqa: F401
    except ImportError:
        raise UsageError(f"asv is not installed: {ASV_EXTRA_HINT}") from None


def git(repo: str, *args: str) -> str:
    proc = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"git {' '.join(args)} failed"
        raise UsageError(last)
    return proc.stdout.strip()


def resolve_commit(repo: str, rev: str) -> str:
    proc = subprocess.run(["git", "-C", repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise UsageError(f"unknown commit {rev!r} in {repo}")
    return proc.stdout.strip()


def first_parents_after(repo: str, older: str, newer: str) -> list[str] | None:
    """The commits after `older` up to `newer` along newer's first parents, oldest first (newer included); None
    when `older` is not one of those first-parent ancestors. What bisect searches and history reads."""
    history = git(repo, "rev-list", "--first-parent", newer).split()
    if older not in history:
        return None
    return list(reversed(history[:history.index(older)]))


def repo_root(repo: str) -> str:
    if not os.path.isdir(repo):
        raise UsageError(f"--repo {repo}: no such folder")
    try:
        root = git(repo, "rev-parse", "--show-toplevel")
    except UsageError:
        raise UsageError(f"{os.path.abspath(repo)} is not in a git repository: run this in your repository's "
                         "clone, or give it with --repo") from None
    if not os.path.exists(os.path.join(root, "asv.conf.json")):
        raise UsageError(f"no asv.conf.json in {root}")
    return root


def list_benchmark_cells(repo: str) -> list[str]:
    """Every `module.Class.method(param, ...)` name that asv's `-b` regex is matched against.

    The suite is imported (its modules are thin: importing them loads no framework) and the names are
    spelled as asv spells them, each parameter value as its repr."""
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
                params = getattr(cls, "params", None)
                combos = list(itertools.product(*params)) if params else [None]
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


def asv_config(repo: str) -> Any:
    from asv.config import Config

    conf = Config.load(os.path.join(repo, "asv.conf.json"))
    for attr in ("results_dir", "benchmark_dir", "html_dir", "env_dir"):  # asv resolves these against the cwd
        setattr(conf, attr, os.path.join(repo, getattr(conf, attr)))
    if "://" not in conf.repo and not conf.repo.startswith("git@"):  # a local repository, as asv reads it
        conf.repo = os.path.join(repo, conf.repo)
    return conf


def machine_name() -> str:
    from asv.machine import Machine

    return Machine.get_unique_machine_name()


def backend_environments(repo: str, backends: list[str] | None, every: bool = False) -> dict[str, str]:
    """{stack: asv environment name} for the backends asked for (KERAS_BACKEND values, or tf-keras for the
    Keras 2 row). None: every Keras 3 backend of the matrix (the alert's and calibration's default: the
    Keras 2 row only on request, an alert is long enough), or every environment with `every`.

    asv's `-E` takes an environment's full name, which carries its requirements and environment variables;
    asv builds the names itself from asv.conf.json's matrix."""
    from asv.environment import get_environments

    envs = {env_stack(env.env_vars) or "tensorflow": env.name for env in get_environments(asv_config(repo), None)}
    if not envs:
        raise UsageError(f"asv finds no environment for {repo}/asv.conf.json (is virtualenv installed?)")
    if backends is None:
        return envs if every else {b: name for b, name in envs.items() if b != TF_KERAS}
    unknown = [b for b in backends if b not in envs]
    if unknown:
        raise UsageError(f"--backend {','.join(unknown)}: not in asv.conf.json's environments "
                         f"({', '.join(envs)})")
    return {b: envs[b] for b in backends}


def ensure_machine(repo: str, machine: str | None) -> None:
    """asv's record of this machine (~/.asv-machine.json), under `machine` when given (a CI runner's name):
    `asv run` and the paired design's results both need one, and asv asks for it interactively otherwise."""
    subprocess.run([sys.executable, "-m", "asv", "machine", "--yes", *(["--machine", machine] if machine else [])],
                   cwd=repo, capture_output=True)


def run_asv(repo: str, commits: list[str], regexes: list[str], processes: int, log_path: Path,
            environments: list[str] | None = None, append: bool = False, machine: str | None = None,
            progress: Callable[[str], None] | None = None) -> int:
    """`asv run` of the commits in the order given, rounds interleaved across them (asv runs the rounds
    A B, B A, A B, ... so a drift of the machine lands on both alike; which commit comes first is the
    caller's choice), samples recorded; StepTime gets `processes` rounds (FITBENCH_PROCESSES), the other
    benchmarks keep their own. `append` adds the new processes' samples after those asv already stored (a
    second stage). Not `asv continuous`: its verdict is asv's pooled-sample test, which this module exists
    to replace. The log is appended to, and kept beside the report."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "FITBENCH_PROCESSES": str(processes)}
    asv = [sys.executable, "-m", "asv"]
    ensure_machine(repo, machine)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as hashes:
        hashes.write("\n".join(commits) + "\n")
    cmd = [*asv, "run", "--interleave-rounds", "--record-samples", *(["--append-samples"] if append else []),
           "--show-stderr", *[arg for regex in regexes for arg in ("-b", regex)],
           *(["--machine", machine] if machine else []),
           *[arg for name in environments or [] for arg in ("-E", name)], f"HASHFILE:{hashes.name}"]
    try:
        with open(log_path, "a") as log:
            log.write(f"$ FITBENCH_PROCESSES={processes} {' '.join(cmd)}   # commits in this order: "
                      f"{' '.join(c[:10] for c in commits)}\n")
            log.flush()
            # asv's own benchmark processes go with it when fitbench is stopped (its process group)
            return run_process_group(cmd, cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     on_line=_asv_progress(progress) if progress else None)
    finally:
        os.unlink(hashes.name)


def _asv_progress(progress: Callable[[str], None], every_s: float = 10.0) -> Callable[[str], None]:
    """asv's progress lines ("[ 40.00%] ··· bench.X.time_y  ok") forwarded with the time elapsed, at most one
    every `every_s` seconds but for each benchmark's result, so a terminal or a CI log is never silent for long."""
    started = time.monotonic()
    last = [started - every_s]

    def forward(line: str) -> None:
        text = line.strip()
        if not text.startswith("[") or "%]" not in text:
            return
        now = time.monotonic()
        result = "···" in text and "Running (" not in text and "Setting up" not in text
        if result or now - last[0] >= every_s:
            last[0] = now
            progress(f"asv {' '.join(text.split())} ({(now - started) / 60:.1f} min)")

    return forward


@dataclass
class CellResult:
    """One benchmark cell (benchmark x parameters x environment) of one commit, as asv stored it."""

    benchmark: str  # asv's key, e.g. bench_fit.StepTime.time_step
    params: dict[str, str]  # parameter name -> value as asv spells it (repr)
    backend: str | None  # the environment's stack: KERAS_BACKEND, or tf-keras (env_stack)
    env_name: str
    unit: str | None
    value: float | None  # asv's value: None = the benchmark failed, nan = n/a (skipped)
    samples: list[float] | None  # every sample of every process, in order (time benchmarks only)
    per_process: int | None  # samples per process, from the stored benchmark version; None: not recorded
    version: str | None = None  # the benchmark version asv stored with the result
    layout_now: int | None = None  # samples per process of today's suite (benchmarks.json), for the messages

    @property
    def name(self) -> str:
        return self.benchmark + (f"({', '.join(self.params.values())})" if self.params else "")

    @property
    def key(self) -> str:
        """Unique over environments: the name, and the backend it ran on."""
        return cell_key(self.name, self.backend or self.env_name)

    def grouped(self) -> "Grouped | None":
        """The processes of this result (fitbench.regress.decide.group_processes), or None when it has no
        per-process structure (no samples kept, or a benchmark that does not record one). A sample count
        that does not split into the recorded layout raises ValueError: the cell is marked, never regrouped."""
        from fitbench.regress.decide import group_processes

        if not self.samples or not self.per_process:
            return None
        return group_processes(self.samples, self.per_process)

    def process_values(self) -> list[float] | None:
        """One value per good process (median of its samples), or None when the samples cannot be cut into
        processes."""
        try:
            grouped = self.grouped()
        except ValueError:
            return None
        return grouped.values if grouped else None


def env_stack(env_vars: dict[str, str]) -> str | None:
    """What an asv environment runs, as fitbench names it: its KERAS_BACKEND, or `tf-keras` where
    TF_USE_LEGACY_KERAS=1 sits beside KERAS_BACKEND=tensorflow (asv.conf.json's Keras 2 row)."""
    backend = env_vars.get("KERAS_BACKEND")
    if env_vars.get(LEGACY_ENV) == "1" and backend in (None, "tensorflow"):
        return TF_KERAS
    return backend


def cell_key(name: str, backend: str) -> str:
    """How a cell is named across commits and in the calibration: "module.Class.method(params) [backend]"."""
    return f"{name} [{backend}]"


WRITING = "fitbench-writing.lock"  # in the results folder while a fitbench command stores results there


@contextlib.contextmanager
def writing(results_dir: str, what: str) -> Iterator[None]:
    """While a command stores results (an alert, a bisect's steps, a calibration): a lock file naming it, so that
    a reader (`fitbench history`, `alert --stored`) can say that what it reads is being rewritten. Re-entrant
    for the same process (a bisect runs alerts)."""
    path = Path(results_dir) / WRITING
    mine = path.exists() and path.read_text().split(" ", 1)[0] == str(os.getpid())
    if not mine:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{os.getpid()} {what} since {time.strftime('%H:%M:%S')}")
    try:
        yield
    finally:
        if not mine:
            try:
                path.unlink()
            except OSError:
                pass


def writer(results_dir: str) -> str | None:
    """One line when another live fitbench process is storing results in `results_dir` (a stale lock, whose
    process is gone, is removed), else None."""
    from fitbench.processes.isolation import pid_alive

    path = Path(results_dir) / WRITING
    try:
        pid, _, what = path.read_text().partition(" ")
    except OSError:
        return None
    if not pid.isdigit() or not pid_alive(int(pid)):
        try:
            path.unlink()
        except OSError:
            pass
        return None
    if int(pid) == os.getpid():
        return None
    return (f"note: {what} (pid {pid}) is storing results in {results_dir}: what is read now may change under "
            "it; read again when it has finished")


def require_stored(results_dir: str) -> None:
    """One line (UsageError) saying what to run first, where asv has stored nothing yet: asv's own error is a
    traceback about a missing benchmark list."""
    if not os.path.exists(os.path.join(results_dir, "benchmarks.json")):
        raise UsageError(f"nothing is stored in {results_dir} yet (no benchmarks.json): run `fitbench alert "
                         "BASE HEAD` or `asv run --record-samples` there first")


def read_results(repo: str, commits: list[str], regex: str, environments: list[str] | None = None,
                 machine: str | None = None, results_dir: str | None = None) -> dict[str, dict[str, CellResult]]:
    """{commit: {CellResult.key: cell}}: every stored cell of each commit on this machine (or `machine`, in
    the repository's results or `results_dir`) whose name `regex` matches. Units and parameter names come
    from benchmarks.json; the samples per process from the version stored with each result (what that run
    did), never from today's profile."""
    from asv.benchmarks import Benchmarks
    from asv.results import iter_results_for_machine_and_hash

    conf = asv_config(repo)
    if results_dir is not None and os.path.exists(os.path.join(results_dir, "benchmarks.json")):
        conf.results_dir = results_dir  # a runner's results come with the suite they were stored against
    require_stored(conf.results_dir)
    benchmarks = Benchmarks.load(conf)
    conf.results_dir = results_dir or conf.results_dir
    pattern = re.compile(regex)
    machine = machine or machine_name()
    out: dict[str, dict[str, CellResult]] = {commit: {} for commit in commits}
    for commit in commits:
        for result in iter_results_for_machine_and_hash(conf.results_dir, machine, commit):
            if environments is not None and result.env_name not in environments:
                continue  # results of a backend this run did not ask for (e.g. from an earlier asv run)
            for key in result.get_all_result_keys():
                info = benchmarks.get(key, {})
                params = result.get_result_params(key)
                values = result.get_result_value(key, params)
                samples = result.get_result_samples(key, params)
                version = result.benchmark_version.get(key)
                names = list(info.get("param_names", []))
                for index, combo in enumerate(itertools.product(*params) if params else [()]):
                    cell = CellResult(
                        benchmark=key, params=dict(zip(names, combo)),
                        backend=env_stack(result.env_vars) or "tensorflow", env_name=result.env_name,
                        unit=info.get("unit"), value=values[index], samples=samples[index] if samples else None,
                        per_process=samples_per_process(version), version=version,
                        layout_now=samples_per_process(info.get("version")))
                    if pattern.search(cell.name):
                        out[commit][cell.key] = cell
    return out


def require_layout(cells: dict[str, dict[str, CellResult]], what: str) -> None:
    """Decisions on stored results need each process-level cell's layout: one line (UsageError) naming the
    first cell that today's suite cuts into processes but that was stored without its layout (by a suite
    from before fitbench recorded it), rather than a guess from today's profile."""
    for commit, by_key in cells.items():
        for key, cell in by_key.items():
            if cell.samples and cell.per_process is None and cell.layout_now is not None:
                raise UsageError(f"{what}: asv's stored result for {key} on {commit[:10]} does not record how many "
                                 f"samples each process gave (its benchmark version {cell.version!r}); run "
                                 "`asv run --record-samples` on it again with this suite")


def errors_in_log(log_text: str) -> list[str]:
    """The distinct exception lines asv printed (--show-stderr) for failing benchmarks; asv keeps no
    stderr in its result files, so the log is where they are."""
    found = [m.group(1).strip() for m in re.finditer(r"^[\s·]*((?:\w+\.)*\w+(?:Error|Exception): .*)$", log_text, re.M)]
    return list(dict.fromkeys(found))

"""What the paired design asks of asv, behind one adapter: each commit's build in each environment, and the
pairs' samples stored as asv results (so `asv publish` and `fitbench history` see them), with the pairing
beside them.

asv installs one commit at a time into an environment; a pair needs both commits alive at once in the same
environment. So each commit's wheel, which asv builds into its build cache (`asv-build-cache/<commit>/` in
the environment, `build_cache_size` in asv.conf.json), is installed once more with `pip install --target`
into a folder of its own (`fitbench-commits/<commit>/` in the environment), and a worker puts that folder
first on its PYTHONPATH. The environment's other packages are shared by both sides: a commit that changes
its dependencies is not something a pair can compare (use --design unpaired).

Uses asv's Python objects (Config, get_repo, get_environments, Environment.install_project, Benchmarks,
Results, Machine) and its build cache's layout: not a stable API, hence asv<0.7 in pyproject.toml (checked
with 0.6.4-0.6.6). Preparing runs in a process of its own in the repository (asv reads its working directory),
`python -m fitbench.regress.asvpairs prepare ...`, its log appended to the alert's asv.log.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from fitbench.errors import UsageError
from fitbench.processes.isolation import heartbeat, run_process_group
from fitbench.report.document import Document

COMMITS_FOLDER = "fitbench-commits"  # in each asv environment: one folder per commit's build
COMPLETE = ".fitbench-complete"  # written last: a folder without it is half-installed and built again
KEEP_COMMITS = 12  # builds kept per environment (a bisect visits about log2 of its range)
PAIRING_FOLDER = "fitbench-pairs"  # in results/<machine>/: one record per base and head
PAIRING_SUFFIX = ".pairs"  # not .json: asv reads every .json under results/ as a result file
PAIRING_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class EnvironmentSides:
    """One asv environment, ready for pairs: its Python, the variables asv gives its benchmark processes,
    and each commit's build folder (None: the project builds no wheel, so both sides import what the
    environment holds and only ASV_COMMIT tells them apart)."""

    name: str
    python: str
    env_vars: dict[str, str]
    asv_env: dict[str, str]
    sites: dict[str, str | None]


# ---------- preparing (runs in its own process, in the repository) ----------

def _prepare(repo: str, env_names: list[str], commits: list[str], discover: bool) -> dict[str, Any]:
    from asv.benchmarks import Benchmarks
    from asv.environment import get_environments
    from asv.repo import get_repo

    from fitbench.regress.asvdata import asv_config

    conf = asv_config(repo)
    vcs = get_repo(conf)
    environments = list(get_environments(conf, env_names))
    out: dict[str, Any] = {}
    for env in environments:
        env.create()
        python = env.find_executable("python")
        root = os.path.dirname(os.path.dirname(python))
        sites: dict[str, str | None] = {}
        for commit in commits:
            site = os.path.join(root, COMMITS_FOLDER, commit)
            marker = os.path.join(site, COMPLETE)
            if not os.path.exists(marker):
                env.install_project(conf, vcs, commit)  # builds into asv's build cache, or takes it from there
                wheels = sorted(glob.glob(os.path.join(root, "asv-build-cache", commit, "*.whl")))
                if not wheels and conf.build_command != []:
                    raise UsageError(f"asv kept no wheel of {commit[:10]} in {env.name}'s build cache (is "
                                     "build_cache_size 0 in asv.conf.json?): a pair needs both commits' builds; "
                                     "set it to 2 or more, or use --design unpaired")
                os.makedirs(site, exist_ok=True)
                if wheels:
                    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--upgrade",
                                    "--target", site, *wheels], check=True, stdout=sys.stderr)
                with open(marker, "w") as f:
                    json.dump({"wheels": [os.path.basename(w) for w in wheels]}, f)
            with open(marker) as f:
                sites[commit] = site if json.load(f)["wheels"] else None
        _prune(os.path.join(root, COMMITS_FOLDER), keep=set(commits))
        out[env.name] = asdict(EnvironmentSides(
            name=env.name, python=python, env_vars=dict(env.env_vars), sites=sites,
            asv_env={"ASV": "true", "ASV_PROJECT": conf.project, "ASV_CONF_DIR": os.path.abspath(repo),
                     "ASV_ENV_NAME": env.name, "ASV_ENV_DIR": root, "ASV_ENV_TYPE": str(env.tool_name)}))
    if discover:  # benchmarks.json: what the results are stored against (asv run writes it the same way)
        Benchmarks.discover(conf, vcs, environments, [commits[-1]]).save()
    return out


def _prune(folder: str, keep: set[str]) -> None:
    """Keep the KEEP_COMMITS most recently used builds (and those of this alert)."""
    try:
        names = sorted(os.listdir(folder), key=lambda n: os.path.getmtime(os.path.join(folder, n)), reverse=True)
    except OSError:
        return
    import shutil

    for name in names[KEEP_COMMITS:]:
        if name not in keep:
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def prepare(repo: str, env_names: list[str], commits: list[str], log: Path, discover: bool = True,
            progress: Callable[[str], None] | None = None) -> dict[str, EnvironmentSides]:
    """Each environment created, each commit built and installed in a folder of its own; {env name: sides}.
    asv's messages go to `log`; a failure is one line (UsageError). `progress` gets a line every 15 s meanwhile
    (a new environment takes about a minute, and asv says nothing while it installs)."""
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as answer:
        path = answer.name
    try:
        with open(log, "a") as out:
            out.write(f"$ fitbench: preparing {', '.join(c[:10] for c in commits)} in {', '.join(env_names)}\n")
            out.flush()
            with heartbeat(progress, "preparing the builds (asv: environments, each commit installed)"):
                status = run_process_group([sys.executable, "-m", "fitbench.regress.asvpairs", "prepare", path,
                                            json.dumps({"repo": repo, "envs": env_names, "commits": commits,
                                                        "discover": discover})],
                                           cwd=repo, stdout=out, stderr=subprocess.STDOUT)
        text = Path(path).read_text()
    finally:
        os.unlink(path)
    if status != 0 or not text:
        raise UsageError(f"asv could not prepare the commits' builds for pairs (exit {status}; see {log})")
    doc = json.loads(text)
    if "error" in doc:
        raise UsageError(doc["error"])
    return {name: EnvironmentSides(**sides) for name, sides in doc.items()}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "prepare":
        sys.stderr.write("usage: python -m fitbench.regress.asvpairs prepare ANSWER.json ARGS-JSON\n")
        return 2
    args = json.loads(argv[2])
    try:
        doc = _prepare(args["repo"], args["envs"], args["commits"], args["discover"])
    except UsageError as exc:
        doc = {"error": str(exc)}
    Path(argv[1]).write_text(json.dumps(doc))
    return 0


# ---------- storing the pairs' samples as asv results ----------

def benchmark_info(repo: str) -> dict[str, dict[str, Any]]:
    """benchmarks.json as asv loaded it: {benchmark name: its attributes (params, version, type, unit, ...)}."""
    from asv.benchmarks import Benchmarks

    from fitbench.regress.asvdata import asv_config

    return dict(Benchmarks.load(asv_config(repo)))


NOT_AVAILABLE, FAILED = "n/a", "failed"  # what store() takes in place of a cell's samples


def store(repo: str, machine: str, env_name: str, commit: str,
          samples: dict[str, dict[int, list[float] | str]], append: bool) -> None:
    """Each benchmark's samples ({name: {parameter index: samples, or NOT_AVAILABLE, or FAILED}}) into asv's
    result file for this commit, environment and machine, as `asv run --record-samples` would
    (`--append-samples` with `append`): n/a as asv's NaN, a failure as its null; the parameter combinations
    not given keep what was stored."""
    from asv.environment import get_environments
    from asv.machine import Machine
    from asv.repo import get_repo
    from asv.results import Results
    from asv.runner import BenchmarkResult

    from fitbench.regress.asvdata import asv_config

    conf = asv_config(repo)
    info = benchmark_info(repo)
    env = next(iter(get_environments(conf, [env_name])))
    machine_info = Machine.load(machine_name=machine, interactive=False)
    machine_info.save(conf.results_dir)  # results/<machine>/machine.json, as `asv run` writes it
    params = dict(machine_info.__dict__)
    params["python"] = env.python
    params.update(env.requirements)
    result = Results(params, env.requirements, commit, get_repo(conf).get_date(commit), env.python, env.name,
                     env.env_vars)
    result.load_data(conf.results_dir)
    for name, by_index in samples.items():
        bench = info[name]
        combos = math.prod(len(p) for p in bench["params"]) if bench["params"] else 1
        kept = [by_index[i] if isinstance(by_index.get(i), list) else None for i in range(combos)]
        values = [None if by_index.get(i) in (None, FAILED) else
                  math.nan if by_index[i] == NOT_AVAILABLE or not by_index[i] else statistics.median(by_index[i])
                  for i in range(combos)]
        failed = any(v == FAILED for v in by_index.values())
        result.add_result(bench, BenchmarkResult(result=values, samples=kept,
                                                 number=[1 if kept[i] else None for i in range(combos)],
                                                 errcode=1 if failed else 0, stderr="", profile=None),
                          record_samples=True, append_samples=append, selected_idx=set(by_index))
    result.save(conf.results_dir)


# ---------- the pairing record ----------

@dataclass
class CellPairs:
    """How one cell's stored processes pair up: process i of base with process i of head, in the order
    stored, one entry per pair (its stage, runner, design and who led)."""

    env_name: str
    benchmark: str
    param_index: int
    samples_per_process: int
    pairs: list[dict[str, Any]]  # {"stage", "runner", "design", "first", "cpus", "index"} per stored process
    digest: dict[str, str]  # base|head -> sha256 of the samples stored for this cell when the record was written
    failed: list[str] = field(default_factory=list)  # why pairs were dropped (nothing of them is stored)


@dataclass
class PairingRecord(Document):
    """fitbench's note beside asv's results: which stored processes of base and head were measured as pairs."""

    base: str
    head: str
    machine: str
    cells: dict[str, CellPairs]
    stages: int | None = None  # the stages the alert that wrote it planned: --stored decides at their level
    schema_version: int = PAIRING_SCHEMA_VERSION



def digest(samples: list[float] | None) -> str:
    return hashlib.sha256(json.dumps(samples or []).encode()).hexdigest()


def pairing_path(results_dir: str, machine: str, base: str, head: str) -> Path:
    return Path(results_dir) / machine / PAIRING_FOLDER / f"{base}-{head}{PAIRING_SUFFIX}"


def save_pairing(results_dir: str, record: PairingRecord) -> Path:
    path = pairing_path(results_dir, record.machine, record.base, record.head)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(record.to_dict(), indent=1))
    os.replace(partial, path)  # never half a record
    return path


def load_pairing(results_dir: str, machine: str, base: str, head: str) -> PairingRecord | None:
    path = pairing_path(results_dir, machine, base, head)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if doc.get("schema_version") != PAIRING_SCHEMA_VERSION:
        return None
    cells = {k: CellPairs(**v) for k, v in doc["cells"].items()}
    return PairingRecord(base=doc["base"], head=doc["head"], machine=doc["machine"], cells=cells,
                         stages=doc.get("stages"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

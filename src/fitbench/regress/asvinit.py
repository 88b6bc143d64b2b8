"""`fitbench asv-init --model mypkg.models:build`: asv on your own repository, in one command.

Writes `asv.conf.json` (asv builds your package at each commit and installs it, with fitbench beside it,
into its virtualenv; the KERAS_BACKEND axis shares that one) and a thin `benchmarks/` whose classes subclass
fitbench.asvsuite and only declare your model and the parameters. Parent side: nothing here imports a
framework; the factory is tried in a fresh process (fitbench.models.check.check_in_child).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from fitbench import backends
from fitbench.errors import UsageError
from fitbench.models.choice import FILE, parse_model
from fitbench.report.io import write_text_atomic

BENCH_FILE = "benchmarks/bench_model.py"
FRAMEWORK_PACKAGE = {"jax": "jax", "torch": "torch"}  # TensorFlow comes with fitbench itself


@dataclass(frozen=True)
class InitSettings:
    repo: str
    model: str
    backends: tuple[str, ...] = ("tensorflow",)
    batch_sizes: tuple[int, ...] = (256,)
    loss: str | None = None
    optimizer: str | None = None
    data: str | None = None  # --data: an .npz file inside the repository (the benchmarks name it relative to it)
    fitbench_spec: str | None = None  # how asv's environments install fitbench (default: like this one)
    force: bool = False
    check: bool = True  # build the model and train one step in a fresh process first


def fitbench_requirement() -> str:
    """How to install this fitbench elsewhere: its source directory when it was installed from one (pip's
    direct_url.json), else `fitbench==VERSION` from the package index."""
    dist = metadata.distribution("fitbench")
    direct = dist.read_text("direct_url.json")
    if direct:
        url = json.loads(direct).get("url", "")
        if url.startswith("file://"):
            return url.removeprefix("file://")
    return f"fitbench=={dist.version}"


def _installed_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git(repo: Path, *args: str) -> str | None:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def _package_name(repo: Path) -> str:
    """The project's name from pyproject.toml (asv's `project`), else the directory's name."""
    pyproject = repo / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        try:
            name = tomllib.loads(pyproject.read_text()).get("project", {}).get("name")
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{pyproject}: not valid TOML: {exc}") from None
        if name:
            return str(name)
    return repo.name


def asv_config(settings: InitSettings, project: str, branch: str) -> dict[str, Any]:
    req: dict[str, list[str]] = {}
    for backend in settings.backends:
        package = FRAMEWORK_PACKAGE.get(backend)
        if package:
            version = _installed_version(package)  # the version tested here; a plain torch may pull CUDA
            req[package] = [version or ""]
    fitbench = settings.fitbench_spec or fitbench_requirement()
    return {
        "version": 1,
        "project": project,
        "project_url": "",
        "repo": ".",
        "branches": [branch],
        "dvcs": "git",
        "environment_type": "virtualenv",
        "pythons": [f"{sys.version_info.major}.{sys.version_info.minor}"],
        # your package at each commit, with fitbench beside it (written by fitbench asv-init)
        "install_command": [f"in-dir={{env_dir}} python -m pip install {{wheel_file}} {fitbench}"],
        "build_command": ["python -m pip wheel --no-deps -w {build_cache_dir} {build_dir}"],
        "matrix": {"req": req, "env_nobuild": {"KERAS_BACKEND": list(settings.backends)}},
        "benchmark_dir": "benchmarks",
        "env_dir": ".asv/env",
        "results_dir": ".asv/results",
        "html_dir": ".asv/html",
        "launch_method": "spawn",
        "default_benchmark_timeout": 600,
        # StepPhases' cells get one process a plain run (they are for the alert's pairs): asv's own flag wider
        "regressions_thresholds": {r".*StepTime\..*": 0.10, r".*FitLoop\..*": 0.10, r".*StepPhases\..*": 0.25,
                                   r".*Determinism\..*": 0.0, r".*Traces\..*": 0.0},
    }


def bench_source(settings: InitSettings) -> str:
    """`settings.data`, when given, is relative to the repository: asv runs the suite from your working tree."""
    sizes = list(settings.batch_sizes)
    extra = "".join(f"    {name} = {json.dumps(value)}\n" for name, value in (("loss", settings.loss),
                                                                     ("optimizer", settings.optimizer)) if value)
    if settings.data:
        extra += f"    data = str(REPOSITORY / {json.dumps(Path(settings.data).as_posix())})\n"
    return f'''"""asv benchmarks of {settings.model}, written by `fitbench asv-init`.

The classes only say which model and which parameters; what they time lives in fitbench.asvsuite.
`asv run`, then `asv publish` for the report; `fitbench alert BASE HEAD` says, process by process, whether a
commit made a training step slower or broke run-to-run determinism.
"""

from pathlib import Path

from fitbench import asvsuite

MODEL = {json.dumps(settings.model)}
REPOSITORY = Path(__file__).resolve().parents[1]  # this suite's repository, where --data lies


class StepTime(asvsuite.StepTime):
    model = MODEL
{extra}    params = [{sizes!r}]


class FitLoop(asvsuite.FitLoop):
    model = MODEL
{extra}    params = [[False, True], {sizes!r}]


class StepPhases(asvsuite.StepPhases):  # where a worse StepTime grew: the alert measures these in pairs
    model = MODEL
{extra}    params = [asvsuite.StepPhases.params[0], [{max(sizes)}]]


class Traces(asvsuite.Traces):
    model = MODEL
{extra}

class Determinism(asvsuite.Determinism):
    model = MODEL
{extra}'''


def alert_bench(batch_sizes: tuple[int, ...]) -> str:
    """The `--bench` of `fitbench alert` for this suite: StepTime at the largest batch, the trace count and the
    identity."""
    return (rf"StepTime\.time_step\({max(batch_sizes)}\)|Traces\.track_step_traces"
            r"|Determinism\.track_run_to_run_identical")


def init(settings: InitSettings, progress: Callable[[str], None] = lambda line: None) -> list[Path]:
    """Write asv.conf.json, benchmarks/__init__.py and BENCH_FILE into the repository (and the output folders
    into .gitignore); returns the paths written. Every refusal comes before the model is tried."""
    repo = Path(settings.repo).resolve()
    if not repo.is_dir():
        raise UsageError(f"--repo {settings.repo}: no such directory")
    if _git(repo, "rev-parse", "--show-toplevel") != str(repo):
        raise UsageError(f"{repo} is not the top of a git repository: asv benchmarks a repository's commits")
    if not ((repo / "pyproject.toml").is_file() or (repo / "setup.py").is_file()):
        raise UsageError(f"{repo} has no pyproject.toml or setup.py: asv builds and installs your package at "
                         "each commit, so it must be installable")
    choice = _model_choice(settings, repo)
    if choice.data:  # written relative to the repository, whatever the user typed
        settings = replace(settings, data=Path(choice.data).resolve().relative_to(repo).as_posix())
    unknown = [b for b in settings.backends if b not in backends.KERAS3]
    if unknown:
        raise UsageError(f"unknown backend {unknown[0]!r}: choose from {', '.join(backends.KERAS3)}")
    targets = [repo / "asv.conf.json", repo / "benchmarks" / "__init__.py", repo / BENCH_FILE]
    existing = [str(p.relative_to(repo)) for p in targets if p.exists()]
    if existing and not settings.force:
        raise UsageError(f"{', '.join(existing)} already exist in {repo}: --force overwrites them")
    if settings.check:
        progress(f"checking {settings.model}: build, one training step in a fresh process ...")
        _check_factory(choice, repo, settings.backends[0])
    branch = _git(repo, "symbolic-ref", "--short", "HEAD") or "main"
    (repo / "benchmarks").mkdir(exist_ok=True)
    config = asv_config(settings, _package_name(repo), branch)
    write_text_atomic(targets[0], json.dumps(config, indent=4) + "\n")
    write_text_atomic(targets[1], "")
    write_text_atomic(targets[2], bench_source(settings))
    if _ignore_outputs(repo):
        targets.append(repo / ".gitignore")
    return targets


def _model_choice(settings: InitSettings, repo: Path) -> Any:
    with _importable(repo):
        choice = parse_model(settings.model, loss=settings.loss, optimizer=settings.optimizer,
                             data=str(repo / settings.data) if settings.data else None)
    if choice.data and not Path(choice.data).resolve().is_relative_to(repo):
        raise UsageError(f"--data {settings.data}: asv-init takes an .npz file inside the repository ({repo}), "
                         "named relative to it: the benchmarks read it from your working tree")
    if choice.kind == FILE:
        raise UsageError(f"--model {settings.model}: asv-init takes a factory (package.module:function) or a "
                         "zoo name; a saved file does not change with your commits")
    return choice


class _importable:
    """The repository (and its src/ layout) on sys.path and PYTHONPATH, for the check of the factory."""

    def __init__(self, repo: Path) -> None:
        self.paths = [str(p) for p in (repo / "src", repo) if p.is_dir()]

    def __enter__(self) -> None:
        self.saved_path, self.saved_env = list(sys.path), os.environ.get("PYTHONPATH")
        sys.path[:0] = self.paths
        os.environ["PYTHONPATH"] = os.pathsep.join(self.paths + ([self.saved_env] if self.saved_env else []))

    def __exit__(self, *exc: object) -> None:
        sys.path[:] = self.saved_path
        if self.saved_env is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = self.saved_env


def _check_factory(choice: Any, repo: Path, backend: str) -> None:
    from fitbench.models.check import check_in_child

    with _importable(repo):
        check_in_child(choice, backend)


# asv's output, fitbench's reports
IGNORED = (".asv/", "alert-report/", "bisect-report/", "history-report/", "calibrate-asv.log")


def _ignore_outputs(repo: Path) -> list[str]:
    """What asv and fitbench write into the repository is not source: the folders .gitignore lacks are added;
    returns them (the command says so)."""
    ignore = repo / ".gitignore"
    text = ignore.read_text() if ignore.is_file() else ""
    missing = [d for d in IGNORED if not re.search(rf"^/?{re.escape(d.rstrip('/'))}/?\s*$", text, re.M)]
    if missing:
        write_text_atomic(ignore, text + ("" if not text or text.endswith("\n") else "\n")
                          + "".join(f"{d}\n" for d in missing))
    return missing

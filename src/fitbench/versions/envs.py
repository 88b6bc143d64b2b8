"""One cached virtualenv per version column: only what differs is installed, the rest comes from here.

Each environment is `python -m venv` of this interpreter plus a `.pth` file that adds this environment's
site-packages *after* its own (`site.addsitedir`, so the .pth files there work too: fitbench installed in
development mode stays importable). pip, run for the new environment (`pip --python`), sees what is
already here, installs the requested versions and only the dependencies they need beyond it, into the new
environment, where they shadow the ones here. So `keras==3.13.*` costs one small wheel, not a second
TensorFlow; `tensorflow==2.20.*` installs TensorFlow and what it needs. fitbench itself is the same
code in every column: only the versions asked for differ.

Cached by the requirements and the Python (`Column.key`) under FITBENCH_ENV_CACHE (default
~/.cache/fitbench/envs): a marker file written last makes an environment ready; a directory without it
(an interrupted build) is removed and built again. A version pip cannot install is a skipped column with
pip's last error line, not a crash, and is not cached (the index may have it tomorrow).
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from packaging.requirements import Requirement

from fitbench.report.document import Document
from fitbench.versions.spec import Column

MARKER = "fitbench-env.json"
READY, SKIPPED = "ready", "skipped"
REPORTED = ("keras", "tensorflow", "tf-keras", "jax", "jaxlib", "torch", "numpy")  # versions each column records


@dataclass
class VersionEnv(Document):
    label: str
    requirements: list[str]
    status: str  # ready | skipped
    reason: str | None = None  # why skipped: pip's last error line, or the version it got instead
    python: str | None = None  # the interpreter that runs this column
    path: str | None = None  # the environment's directory (null for `installed`)
    cached: bool = False  # found ready in the cache, not built by this command
    versions: dict[str, str] = field(default_factory=dict)  # what the column really runs (REPORTED packages)
    pip_warnings: list[str] = field(default_factory=list)  # e.g. pip's "... requires ..., which is incompatible"



def cache_root() -> Path:
    return Path(os.environ.get("FITBENCH_ENV_CACHE") or Path.home() / ".cache" / "fitbench" / "envs")


def python_tag() -> str:
    return f"{sys.implementation.name}{sys.version_info.major}.{sys.version_info.minor}-{sys.prefix}"


def _env_python(path: Path) -> Path:
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def installed_versions(python: str) -> dict[str, str]:
    """The REPORTED packages' versions as `python` imports them (its own, else the ones it inherits)."""
    code = ("import json, importlib.metadata as m\nout = {}\nfor d in %r:\n    try: out[d] = m.version(d)\n"
            "    except m.PackageNotFoundError: pass\nprint(json.dumps(out))" % (REPORTED,))
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
    return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else {}


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["pip failed without a message"])[-1]


def _unmet(requirements: list[str], versions: dict[str, str], python: str) -> str | None:
    """The first requirement the environment does not meet as it imports (None: all met)."""
    for text in requirements:
        req = Requirement(text)
        got = versions.get(req.name) or versions.get(req.name.replace("_", "-")) or _version_of(python, req.name)
        if got is None:
            return f"{req.name} is not importable in the environment after pip"
        if not req.specifier.contains(got, prereleases=True):
            return f"{req.name} {got} is what the environment runs, not {req.specifier}"
    return None


def _version_of(python: str, name: str) -> str | None:
    proc = subprocess.run([python, "-c", f"import importlib.metadata as m; print(m.version({name!r}))"],
                          capture_output=True, text=True, timeout=60)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def ensure_env(column: Column, root: Path | None = None, log: Callable[[str], None] = lambda line: None,
               timeout_s: float = 3600) -> VersionEnv:
    """The column's environment, from the cache or built now; SKIPPED with the reason when pip cannot
    install it (nothing half-built is left behind)."""
    if column.installed:
        return VersionEnv(column.label, [], READY, python=sys.executable, cached=True,
                          versions=installed_versions(sys.executable))
    root = root or cache_root()
    path = root / column.key(python_tag())
    marker = path / MARKER
    if marker.exists():
        env = VersionEnv(**json.loads(marker.read_text()))
        env.cached = True
        return env
    if path.exists():  # an earlier build stopped half-way
        shutil.rmtree(path)
    root.mkdir(parents=True, exist_ok=True)
    log(f"building the environment of {column.label} in {path}")
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                       capture_output=True, text=True, timeout=300)
        python = str(_env_python(path))
        own_site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                  check=True, capture_output=True, text=True, timeout=60).stdout.strip()
        # after the environment's own packages: what pip installs there shadows what is here
        lines = [f"import site; site.addsitedir({d!r})\n" for d in site.getsitepackages() if os.path.isdir(d)]
        Path(own_site, "zz_fitbench_base.pth").write_text("".join(lines))
        proc = subprocess.run([sys.executable, "-m", "pip", "--python", python, "install",
                               "--disable-pip-version-check", "--no-input", *column.requirements],
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        shutil.rmtree(path, ignore_errors=True)
        return VersionEnv(column.label, list(column.requirements), SKIPPED,
                          reason=f"pip did not finish within {timeout_s:.0f} s")
    except (subprocess.CalledProcessError, OSError) as exc:
        shutil.rmtree(path, ignore_errors=True)
        detail = getattr(exc, "stderr", None) or str(exc)
        return VersionEnv(column.label, list(column.requirements), SKIPPED,
                          reason=f"could not create the environment: {_last_line(detail)}")
    if proc.returncode != 0:
        shutil.rmtree(path, ignore_errors=True)
        return VersionEnv(column.label, list(column.requirements), SKIPPED, reason=f"pip: {_last_line(proc.stderr)}")
    versions = installed_versions(python)
    unmet = _unmet(list(column.requirements), versions, python)
    if unmet:
        shutil.rmtree(path, ignore_errors=True)
        return VersionEnv(column.label, list(column.requirements), SKIPPED, reason=unmet)
    warnings = [line.strip() for line in proc.stderr.splitlines() if "which is incompatible" in line]
    env = VersionEnv(column.label, list(column.requirements), READY, python=python, path=str(path),
                     versions=versions, pip_warnings=warnings)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(env.to_dict(), indent=1))
    os.replace(tmp, marker)  # written last: the environment is whole
    return env

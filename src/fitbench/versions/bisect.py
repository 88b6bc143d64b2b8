"""`fitbench bisect --package NAME GOOD BAD`: the first released version of a dependency after GOOD, up to BAD,
whose cells are slower than GOOD's, so that "a dependency did it" is an answer too.

The same search as over commits (fitbench.regress.bisect.search): step 0 compares BAD with GOOD and picks the
cells to watch (those slower at BAD), then binary search, each step a `fitbench versions GOOD,CANDIDATE`
(fitbench.versions.compare): interleaved fresh processes of both environments, exact tests on per-process
step times, equivalence against ±threshold. A step is *worse* (a watched cell slower), *same* (every watched
cell equivalent or faster) or *unknown* (the search stops and says which versions are left). Environments come
from versions' cache, so a second bisection over the same releases builds nothing.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from packaging.version import InvalidVersion, Version

from fitbench import __version__
from fitbench.errors import UsageError
from fitbench.regress.alertdoc import EXIT_ERROR, EXIT_OK, EXIT_REGRESSION, EXIT_UNDECIDED
from fitbench.regress.bisect import (
    FAILED_STEP,
    SAME,
    UNKNOWN,
    VERDICTS,
    BisectDocument,
    BisectStep,
    CellEvidence,
    cell_answer,
    place_between,
    render_markdown,
    search,
    step_answer,
)
from fitbench.regress.decide import BETTER, EQUIVALENT, WORSE
from fitbench.report.io import keep_document, keep_markdown, utc_stamp
from fitbench.versions.compare import VersionsSettings, compare_versions
from fitbench.versions.envs import READY, VersionEnv, ensure_env
from fitbench.versions.spec import Column

# versions' verdicts (speed) as a bisection step's changes (time)
CHANGE_OF_VERDICT = {"slower": WORSE, "faster": BETTER, "equivalent": EQUIVALENT, "inconclusive": "inconclusive"}
MeasureStep = Callable[[str, str], dict[str, Any]]  # (GOOD, candidate) -> a versions document


def released_versions(package: str) -> list[str]:
    """The package's final releases on the index pip uses, oldest first (`pip index versions`)."""
    proc = subprocess.run([sys.executable, "-m", "pip", "index", "versions", package, "--disable-pip-version-check"],
                          capture_output=True, text=True, timeout=300)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("Available versions:")), None)
    if proc.returncode != 0 or line is None:
        raise UsageError(f"--package {package}: pip finds no released versions of it on its index")
    found = []
    for text in line.split(":", 1)[1].split(","):
        try:
            version = Version(text.strip())
        except InvalidVersion:
            continue
        if not version.is_prerelease and not version.is_devrelease:
            found.append(version)
    return [str(v) for v in sorted(set(found))]


def version_range(package: str, released: list[str], good: str, bad: str) -> list[str]:
    """The released versions after GOOD up to BAD, oldest first; bad input unless both are releases, GOOD is the
    older, and the range holds at least two versions."""
    known = {Version(v): v for v in released}
    ends = []
    for name, text in (("GOOD", good), ("BAD", bad)):
        try:
            version = Version(text)
        except InvalidVersion:
            raise UsageError(f"{name} {text!r} is not a version number") from None
        if version not in known:
            near = ", ".join(released[-5:])
            raise UsageError(f"{package} {text} is not a released version (the latest: {near})")
        ends.append(version)
    if ends[0] >= ends[1]:
        raise UsageError(f"GOOD ({good}) must be an older release than BAD ({bad})")
    inside = [known[v] for v in sorted(known) if ends[0] < v <= ends[1]]
    if len(inside) < 2:
        raise UsageError(f"{package} {good}..{bad} holds one release ({bad}): `fitbench versions "
                         f"{package}=={good},{bad}` says whether it is slower; there is nothing to bisect")
    return inside


def _column(package: str, version: str) -> Column:
    return Column(f"{package}=={version}", (f"{package}=={version}",))


def measure_with_versions(package: str, settings: VersionsSettings, env_root: Path | None,
                          progress: Callable[[str], None]) -> MeasureStep:
    """A step measured by `fitbench versions`: both environments from the cache (built on first use)."""
    envs: dict[str, VersionEnv] = {}

    def env_of(version: str) -> VersionEnv:
        if version not in envs:
            envs[version] = ensure_env(_column(package, version), env_root, log=progress)
        return envs[version]

    def measure(good: str, candidate: str) -> dict[str, Any]:
        pair = [env_of(good), env_of(candidate)]
        unbuilt = [e for e in pair if e.status != READY]
        if unbuilt:
            return {"error": "; ".join(f"{e.label}: {e.reason}" for e in unbuilt), "cells": []}
        return compare_versions(pair, settings, log=progress)

    return measure


def _inverse(speed: float | None) -> float | None:
    return 1.0 / speed if speed else None


def evidence(doc: dict[str, Any], good_label: str, candidate_label: str) -> list[CellEvidence]:
    """Each cell of a versions document as a step's evidence: candidate ÷ GOOD in time per step (> 1 slower)."""
    cells = []
    for row in doc.get("cells", []):
        comp = next((c for c in row["comparisons"] if c["column"] == candidate_label
                     and c["reference"] == good_label), None)
        if comp is None:
            cells.append(CellEvidence(cell=row["cell"], change="failed", ratio=None, ci_low=None, ci_high=None,
                                      stage=None, processes=[len(row["step_time_s"].get(good_label) or []),
                                                             len(row["step_time_s"].get(candidate_label) or [])]))
            continue
        cells.append(CellEvidence(cell=row["cell"], change=CHANGE_OF_VERDICT.get(comp["verdict"], "inconclusive"),
                                  ratio=_inverse(comp["speed_ratio"]), ci_low=_inverse(comp["ci_high"]),
                                  ci_high=_inverse(comp["ci_low"]), stage=1, processes=list(comp["processes"])))
    return cells


def bisect_package(package: str, good: str, bad: str, out_dir: str, settings: VersionsSettings,
                   measure: MeasureStep | None = None, released: list[str] | None = None,
                   env_root: Path | None = None, undecided_ok: bool = False,
                   progress: Callable[[str], None] = lambda line: None) -> BisectDocument:
    """Search the released versions after GOOD up to BAD for the first one slower than GOOD; each step's versions
    document goes under `out_dir`."""
    started = time.monotonic()
    versions = version_range(package, released if released is not None else released_versions(package), good, bad)
    measure = measure or measure_with_versions(package, settings, env_root, progress)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps: list[BisectStep] = []
    good_label = _column(package, good).label
    at_bad: dict[str, float] = {}  # each watched cell's ratio at BAD against GOOD (step 0)

    def step(index: int, watched: list[str] | None) -> BisectStep:
        candidate = versions[index - 1]
        progress(f"step {len(steps)}: {package} {good} against {candidate} ({index} of {len(versions)} releases)")
        t0 = time.monotonic()
        doc = measure(good, candidate)
        report = out / f"step-{len(steps)}-{candidate}.json"
        report = Path(keep_document(str(report), doc))
        cells = evidence(doc, good_label, _column(package, candidate).label)
        if watched is not None:
            cells = [c for c in cells if c.cell in watched]
            place_between(cells, at_bad)
        if doc.get("error"):
            answer = FAILED_STEP
        elif watched is None:  # BAD against GOOD: worse somewhere is enough to search
            answer = WORSE if any(c.change == WORSE for c in cells) else step_answer(cells)
        else:
            answer = step_answer(cells, at_bad)
        result = BisectStep(index=index, commit=candidate, subject=f"{package} {candidate}", answer=answer,
                            alert_exit_status={WORSE: EXIT_REGRESSION, SAME: EXIT_OK}.get(answer, EXIT_UNDECIDED),
                            cells=cells, seconds=round(time.monotonic() - t0, 1),
                            report=report.name if report.parent == out else str(report))
        steps.append(result)
        progress(f"step {len(steps) - 1}: {package} {candidate} is {answer}")
        return result

    first = step(len(versions), None)
    watched = [c.cell for c in first.cells if c.change == WORSE]
    at_bad.update({c.cell: c.ratio for c in first.cells if c.change == WORSE and c.ratio is not None})
    culprit, range_left = None, None
    if first.answer == FAILED_STEP:
        status, note = EXIT_ERROR, f"the first step failed (see {first.report})"
    elif first.answer == SAME:
        status, note = EXIT_OK, f"{package} {bad} is not slower than {good} in any cell: the range holds no regression"
    elif first.answer == UNKNOWN:
        status, note = EXIT_UNDECIDED, f"{bad} against {good}: no cell slower, but some could not be decided"
    else:
        status, low, high = search(len(versions), lambda index: step(index, watched))
        last_same = good if low == 0 else versions[low - 1]
        if status == EXIT_REGRESSION:
            culprit = versions[high - 1]
            note = f"{package} {culprit} is the first release slower than {good}; {last_same}, the one before, is not"
        else:
            range_left = [last_same, versions[high - 1]]
            note = (f"the search stopped at {steps[-1].commit} ({steps[-1].answer}): the culprit lies after "
                    f"{last_same}, up to {versions[high - 1]}")
    culprit_evidence = [c for c in next(s for s in steps if s.commit == culprit).cells
                        if cell_answer(c, at_bad) == WORSE] if culprit else []
    doc = BisectDocument(
        good=good, bad=bad, good_rev=good, bad_rev=bad, bench=", ".join(watched) or "every cell of the settings",
        commits_in_range=len(versions), watched=watched, steps=steps, culprit=culprit,
        culprit_subject=f"{package} {culprit}" if culprit else None, culprit_evidence=culprit_evidence,
        range_left=range_left, commits_measured=len({s.commit for s in steps} - {bad}),
        settings={"versions": asdict(settings)},
        exit_status=EXIT_OK if status == EXIT_UNDECIDED and undecided_ok else status, verdict=VERDICTS[status],
        note=note, seconds=round(time.monotonic() - started, 1), fitbench_version=__version__, finished=utc_stamp(),
        package=package)
    keep_document(str(out / "bisect.json"), doc.to_dict())
    keep_markdown(out / "bisect.md", render_markdown(doc))
    return doc


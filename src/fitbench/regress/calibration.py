"""`fitbench calibrate`: one commit against itself, many processes, to measure each cell's between-process
spread on this machine; stored per machine beside asv's results and read by `fitbench alert` to choose how
many processes a comparison needs and to say, in every row, the smallest change the cell could detect.

(Error rates are not estimated here by resampling these processes: two draws from one pool are the
permutation null itself, so "no more than alpha" would hold by construction. docs/alerts.md counts them
over real alerts instead.)
"""

from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fitbench.errors import UsageError
from fitbench.regress import decide
from fitbench.report.document import Document
from fitbench.report.io import utc_stamp

SCHEMA_VERSION = 1
FILE_NAME = "fitbench-calibration.json"


@dataclass
class CellNoise:
    key: str  # CellResult.key: "bench_fit.StepTime.time_step(32) [tensorflow]"
    benchmark: str
    params: dict[str, str]
    backend: str | None
    unit: str | None
    values: list[float]  # one per process
    median: float
    log_sd: float  # robust between-process spread (decide.robust_log_sd: IQR of logs / 1.349, about the CV)
    sd_log: float = math.nan  # plain standard deviation of the logs, for comparison


@dataclass
class Calibration(Document):
    machine: str
    commit: str
    created: str
    processes: int
    threads: str  # FITBENCH_THREADS in force
    cells: list[CellNoise] = field(default_factory=list)
    command: str = "calibrate"  # `fitbench calibrate --json` (fitbench/schemas/calibrate.schema.json, built from this)
    schema_version: int = SCHEMA_VERSION

    def log_sds(self) -> dict[str, float]:
        return {c.key: c.log_sd for c in self.cells}

    def describe(self) -> str:
        return f"{self.commit[:10]}, {self.processes} processes, {self.created}"


    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "Calibration":
        if doc.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"calibration schema_version {doc.get('schema_version')}, expected {SCHEMA_VERSION}")
        return cls(**{**doc, "cells": [CellNoise(**c) for c in doc["cells"]]})


def calibration_path(repo: str, machine: str) -> Path:
    from fitbench.regress.asvdata import asv_config

    return Path(asv_config(repo).results_dir) / machine / FILE_NAME


def load_calibration(repo: str, machine: str) -> Calibration | None:
    path = calibration_path(repo, machine)
    if not path.is_file():
        return None
    try:
        return Calibration.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path} is not a fitbench calibration ({exc}): run fitbench calibrate again") from None


def noise_from_results(cells: dict[str, Any]) -> list[CellNoise]:
    """Per-process values and spread of every cell that has them (asvdata.CellResult in)."""
    out = []
    for key, cell in sorted(cells.items()):
        values = cell.process_values()
        if not values or len(values) < 2:
            continue
        out.append(CellNoise(key=key, benchmark=cell.benchmark, params=cell.params, backend=cell.backend,
                             unit=cell.unit, values=values, median=statistics.median(values),
                             log_sd=decide.robust_log_sd(values), sd_log=decide.between_process_cv(values)))
    return out


def calibrate(repo: str, rev: str, bench: str, processes: int, out_log: Path, backends: list[str] | None = None,
              save: bool = True, progress: Callable[[str], None] | None = None) -> tuple[Calibration, Path]:
    """Run the cells `processes` times in fresh processes on one commit and store their spread."""
    from fitbench.regress import asvdata

    asvdata.require_asv()
    if processes < 3:
        raise UsageError(f"--processes must be at least 3 to measure a spread, got {processes}")
    repo = asvdata.repo_root(repo)
    commit = asvdata.resolve_commit(repo, rev)
    asvdata.select_benchmarks(repo, bench)
    environments = asvdata.backend_environments(repo, backends)
    machine = asvdata.machine_name()
    out_log.write_text("")  # run_asv appends: this run's log only
    if progress:
        progress(f"asv: {processes} processes per cell on {commit[:10]} (log: {out_log})")
    with asvdata.writing(asvdata.asv_config(repo).results_dir, f"fitbench calibrate {commit[:10]}"):
        status = asvdata.run_asv(repo, [commit], [bench], processes, out_log, list(environments.values()),
                                 progress=progress)
    if status != 0:
        raise RuntimeError(f"asv exited {status} on {commit[:10]}: a benchmark failed (see {out_log}); no "
                           "calibration was stored")
    cells = asvdata.read_results(repo, [commit], bench, list(environments.values()), machine)[commit]
    # only cells this run measured in full: a stale result of an earlier run has another count
    noise = [c for c in noise_from_results(cells) if len(c.values) == processes]
    if not noise:
        raise RuntimeError(f"no cell gave per-process values on {commit[:10]} (see {out_log})")
    result = Calibration(machine=machine, commit=commit,
                         created=utc_stamp(),
                         processes=processes, threads=os.environ.get("FITBENCH_THREADS", "1"), cells=noise)
    path = calibration_path(repo, machine)
    if save:
        from fitbench.report.io import write_json_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(str(path), result.to_dict())
    return result, path

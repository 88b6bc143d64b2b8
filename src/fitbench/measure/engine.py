"""Parent side of `fitbench run`: the loop over cells, the peak probes, the document written as it grows.

No framework is imported here: every cell and every probe runs in its own process, started with the
environment its backend and device need: by default forked from a warm template of that environment, which
imported the framework once (fitbench.processes.forked), or with `fresh_processes` a fresh interpreter each
(fitbench.processes.isolation), as the commands that make claims about processes start theirs.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Protocol

from fitbench import __version__, backends
from fitbench.measure.cells import Cell
from fitbench.measure.child import measure_cell
from fitbench.measure.peak import measure_peak
from fitbench.measure.profiles import Profile
from fitbench.measure.record import PeakRecord, RunDocument, RunRecord
from fitbench.models.choice import ModelChoice
from fitbench.models.seed import ModelSpec
from fitbench.processes.devices import gpus_unseen
from fitbench.processes.forked import WarmProcesses
from fitbench.processes.isolation import IsolatedError, process_env, run_isolated
from fitbench.report.io import utc_stamp, write_json_atomic
from fitbench.stacks import Stack


@dataclass(frozen=True)
class RunSettings:
    """Everything `fitbench run` was asked, checked (fitbench.processes.options) before any process starts."""

    cells: list[Cell]
    profile: Profile
    spec: ModelSpec = ModelSpec()
    model: ModelChoice = ModelChoice()  # --model: the seed network of `spec` by default
    seed: int = 0
    floor: bool = True  # the raw step in every fit cell, and one peak probe per backend and device
    threads: int | None = None  # None: the frameworks' own pools
    cpus: list[int] | None = None
    missing: dict[str, str] | None = None  # stack name -> why it cannot run here (its cells are skipped)
    cell_timeout_s: float = 1800
    json_path: str | None = None  # written after every cell
    fresh_processes: bool = False  # every cell in a fresh interpreter instead of forked from a warm template

    @property
    def backends(self) -> list[str]:
        """The frameworks of the cells that can run here (tf-keras shares TensorFlow's probes)."""
        missing = self.missing or {}
        return list(dict.fromkeys(c.backend for c in self.cells if c.stack.name not in missing))

    @property
    def devices(self) -> list[str]:
        return list(dict.fromkeys(c.device for c in self.cells))


class Progress(Protocol):
    """What the engine tells whoever shows progress (the CLI's bar; nothing in the library)."""

    def looking_for_gpus(self, looking: bool) -> None: ...

    def start(self, total: int) -> None: ...

    def step(self, description: str) -> None: ...  # a probe or cell begins

    def advance(self, outcome: str = "") -> None: ...  # and is done; `outcome`: its answer in a few words


class _Quiet:
    def looking_for_gpus(self, looking: bool) -> None: ...

    def start(self, total: int) -> None: ...

    def step(self, description: str) -> None: ...

    def advance(self, outcome: str = "") -> None: ...


def outcome(record: RunRecord | PeakRecord) -> str:
    """A finished cell's or probe's answer in a few words, for the screen while the run goes on."""
    if record.status != "ok":
        return f"{record.status}: {record.reason or record.error or ''}".rstrip(": ")
    if isinstance(record, PeakRecord):
        return f"peak {record.gflops_per_s:,.0f} GFLOP/s" if record.gflops_per_s else "peak measured"
    text = f"{record.samples_per_s:,.0f} samples/s" if record.samples_per_s else "measured"
    return text + (f", raw/fit {record.efficiency:.2f}" if record.efficiency else "")


class JsonKeeper:
    """Writes the run document after every cell. When its path fails (a full disk, a path the up-front check
    could not judge), the document goes to a file in the temporary folder instead, and `failure` says why, so
    a measured cell is never lost to its output."""

    def __init__(self, path: str) -> None:
        self.path, self.failure = path, None

    def keep(self, doc: RunDocument) -> None:
        try:
            write_json_atomic(self.path, doc.to_dict())
        except OSError as exc:
            if self.failure is not None:  # the fallback failed too: nowhere left to keep it
                raise
            self.failure = f"cannot write {self.path}: {exc.strerror or exc}"
            self.path = os.path.join(tempfile.gettempdir(), f"fitbench-run-{os.getpid()}-{int(time.time())}.json")
            write_json_atomic(self.path, doc.to_dict())


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: `document` holds the cells finished so far (already on disk with --json)."""

    def __init__(self, document: RunDocument) -> None:
        super().__init__()
        self.document = document


def _call(warm: WarmProcesses | None, func: Callable[..., Any], kwargs: dict[str, Any], env: dict[str, str],
          stack: Stack, timeout_s: float, device: str) -> Any:
    """In a process of its own: forked from `warm`'s template of `env`, or (None, or a GPU's cell) a fresh
    interpreter."""
    # A GPU's cells never fork: Keras' own import asks the framework for devices (torch.cuda.is_available on
    # torch), which can start the GPU driver in the template, and a started CUDA driver does not survive a fork.
    if warm is None or device != "cpu":
        return run_isolated(func, kwargs, env=env, timeout_s=timeout_s)
    return warm.call(func, kwargs, env, backends.get(stack.name).WARM_IMPORTS, timeout_s)


def peak_probe(backend: str, device: str, timeout_s: float, warm: WarmProcesses | None = None) -> PeakRecord:
    """The device's peak matmul GFLOP/s, measured in a process of its own (skipped: no GPU there)."""
    try:
        result = _call(warm, measure_peak, {"backend": backend, "device": device},
                       process_env(Stack(backend), device), Stack(backend), timeout_s, device)
    except IsolatedError as exc:
        return PeakRecord(backend, device, status="error", error=str(exc))
    if result is None:
        return PeakRecord(backend, device, status="skipped", reason=f"no GPU visible to {backend} on this machine")
    return PeakRecord(**{**result, "status": "ok"})


def run(settings: RunSettings, progress: Progress | None = None, keeper: JsonKeeper | None = None,
        note: Callable[[str], None] = lambda line: None) -> RunDocument:
    """Measure every cell of `settings` in its own process; return the document (complete unless interrupted:
    then RunInterrupted carries it). The document is kept by `keeper` (default: settings.json_path, if any)
    after every cell. `note`: a line worth telling (a template that could not start)."""
    with WarmProcesses(enabled=not settings.fresh_processes, note=note) as warm:
        return _run(settings, progress or _Quiet(), keeper, warm)


def _run(settings: RunSettings, progress: Progress, keeper: JsonKeeper | None, warm: WarmProcesses) -> RunDocument:
    if keeper is None and settings.json_path:
        keeper = JsonKeeper(settings.json_path)
    missing = settings.missing or {}
    backends = settings.backends
    doc = RunDocument(started=utc_stamp(), fitbench_version=__version__, profile=asdict(settings.profile),
                      spec=settings.spec.to_dict(), model=settings.model.to_dict(), seed=settings.seed,
                      threads_setting=settings.threads, cpus=settings.cpus,
                      cell_processes="forked" if warm.enabled and "cpu" in settings.devices else "fresh")
    try:
        no_gpu: dict[str, str] = {}
        if "gpu" in settings.devices:  # one question per backend, not one framework start per GPU cell
            progress.looking_for_gpus(True)
            no_gpu = gpus_unseen(backends, settings.cell_timeout_s)
            progress.looking_for_gpus(False)
        probes = [(b, d) for b in backends for d in settings.devices
                  if settings.floor and not (d == "gpu" and b in no_gpu)]
        progress.start(len(settings.cells) + len(probes))
        if settings.floor:  # the GPU peak probe of a backend that sees none: skipped, not started
            doc.peaks += [PeakRecord(b, "gpu", status="skipped", reason=why) for b, why in no_gpu.items()]
        peaks: dict[tuple[str, str], PeakRecord] = {}

        def probe(backend: str, device: str) -> None:
            """Once per run, backend and device, in its own process like a cell, just before the first cell
            that needs it: the first cell's answer comes after one probe, not after all of them."""
            if (backend, device) in probes and (backend, device) not in peaks:
                progress.step(f"{backend} {device} peak probe")
                peaks[backend, device] = peak_probe(backend, device, settings.cell_timeout_s, warm)
                doc.peaks.append(peaks[backend, device])
                progress.advance(outcome(peaks[backend, device]))

        for cell in settings.cells:
            if cell.stack.name not in missing:
                probe(cell.backend, cell.device)
            progress.step(cell.label())
            if cell.stack.name in missing:
                record = RunRecord.not_measured(cell, "skipped", missing[cell.stack.name])
            elif cell.device == "gpu" and cell.backend in no_gpu:
                record = RunRecord.not_measured(cell, "skipped", no_gpu[cell.backend])
            else:
                record = measure(cell, settings, peaks.get((cell.backend, cell.device)), warm)
            doc.records.append(record)
            if keeper:  # every finished cell is on disk: an interrupted run keeps them
                keeper.keep(doc)
            progress.advance(outcome(record))
        for backend, device in probes:  # a probe no cell needed (every cell of its backend skipped)
            probe(backend, device)
    except KeyboardInterrupt:
        raise RunInterrupted(doc) from None
    doc.complete, doc.finished = True, utc_stamp()
    if keeper:
        keeper.keep(doc)
    return doc


def measure(cell: Cell, settings: RunSettings, peak: PeakRecord | None = None,
            warm: WarmProcesses | None = None) -> RunRecord:
    """One cell in a process of its own with its environment (backend, device, threads, determinism switch):
    forked from `warm`'s template of that environment, or (None, or on a GPU) a fresh interpreter."""
    try:
        values = _call(warm, measure_cell,
                       {"cell": asdict(cell), "profile": asdict(settings.profile),
                        "spec": settings.spec.to_dict(), "seed": settings.seed,
                        "model": settings.model.to_dict(),
                        "peak": peak.to_dict() if peak and peak.status == "ok" else None,
                        "raw": settings.floor, "threads": settings.threads, "cpus": settings.cpus},
                       process_env(cell.stack, cell.device, threads=settings.threads,
                                   op_determinism=cell.determinism, device_count=cell.device_count),
                       cell.stack, settings.cell_timeout_s, cell.device)
    except IsolatedError as exc:
        return RunRecord.not_measured(cell, "error", str(exc))
    return RunRecord(**values)


def errors(doc: RunDocument) -> list[RunRecord]:
    return [r for r in doc.records if r.status == "error"]


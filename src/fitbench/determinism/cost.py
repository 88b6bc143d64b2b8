"""`fitbench cost`: what each backend's determinism switch (or data parallelism over N devices) costs a cell,
with the process as the unit.

Every cell is measured without and with the treatment — the switch off and on, or one device and N — and, for
the A/A, with it a second time, each a fresh process (`fitbench run`'s own cell, fitbench.measure.engine),
interleaved cell by cell and round by round — A B B', then B' B A — so that a drift of the machine falls on
every column alike. Each process gives one value, its median step time; per cell the treated column is decided
against the untreated one, and the second treated column against the first (the A/A: the same thing twice must
come out "equivalent", never "slower"), all with fitbench.regress.decide (exact rank-sum, Hodges-Lehmann ratio
and interval, Holm over every comparison, equivalence within ±threshold).

Parent side: no framework here.
"""

from __future__ import annotations

import json
import platform
import statistics
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

from fitbench import __version__, exits
from fitbench.errors import UsageError
from fitbench.measure.cells import Cell
from fitbench.measure.profiles import PROFILES, Profile
from fitbench.models.choice import ModelChoice
from fitbench.regress.decide import FASTER, SLOWER, DecisionSettings, SpeedComparison, decide, usable_values
from fitbench.report.io import utc_stamp

SCHEMA_VERSION = 1
OFF, ON, ON_AGAIN = "off", "on", "on again"  # the determinism columns; ON_AGAIN only with the A/A
DETERMINISM, DEVICES = "determinism", "devices"  # what `fitbench cost --of` measures
EXIT_OK, EXIT_OVER, EXIT_UNDECIDED = exits.OK, exits.FOUND, exits.UNDECIDED  # --max-cost: below / above / cannot tell


@dataclass(frozen=True)
class CostSettings:
    """What `fitbench cost` measures; checked (fitbench.commands.cost) before any process starts."""

    backends: tuple[str, ...] = ("tensorflow",)  # stacks, tf-keras too
    apis: tuple[str, ...] = ("functional",)
    batch_sizes: tuple[int, ...] = (32, 256)
    jits: tuple[bool, ...] = (False, True)
    device: str = "cpu"
    switches: dict[str, str] = field(default_factory=dict)  # stack -> switch name (default: each one's first)
    of: str = DETERMINISM  # determinism: switch off vs on; devices: one device vs `devices` (DataParallel)
    devices: int = 2  # with of=devices
    processes: int = 6  # per cell and column
    aa: bool = True  # a second switch-on column, decided against the first
    threads: int | None = 1  # one thread per framework pool: the steadiest between processes (docs/noise.md)
    profile: str = "quick"  # the timed steps of each process
    model: dict[str, Any] = field(default_factory=lambda: ModelChoice().to_dict())
    seed: int = 0
    alpha: float = 0.05  # family-wise, Holm over every comparison
    threshold: float = 0.10  # "equivalent": within ±threshold
    min_change: float = 0.05  # a significant change smaller than this is not called slower or faster
    max_cost: float | None = None  # a gate: the switch may slow a cell down by at most this factor (e.g. 1.35)
    cell_timeout_s: float = 1800

    def columns(self) -> list[str]:
        """[without, with, with again (the A/A)]: the switch off / on / on again, or 1 device / N / N again."""
        names = [OFF, ON, ON_AGAIN] if self.of == DETERMINISM else [
            "1 device", f"{self.devices} devices", f"{self.devices} devices again"]
        return names if self.aa else names[:2]


@dataclass
class CostCell:
    """One cell: its per-process step times in each column, and the decisions."""

    cell: str  # e.g. "torch functional jit=on cpu batch 32"
    backend: str  # the stack (tf-keras for Keras 2)
    api: str
    jit_requested: bool
    batch_size: int
    treatment: str  # what the second column turns on: the switch's name, or "N devices"
    step_time_s: dict[str, list[float]]  # column -> one median step time per process
    samples_per_s: dict[str, float | None]  # column -> batch ÷ median over processes
    jit_effective: dict[str, bool | None]  # column -> what Keras really ran (TF op determinism turns XLA off)
    switch_in_force: dict[str, bool | None]  # column -> what the framework said in the process
    errors: dict[str, str] = field(default_factory=dict)  # column -> the last error of a process
    cost: SpeedComparison | None = None  # with against without: speed_ratio < 1 is what the treatment costs
    aa: SpeedComparison | None = None  # with again against with: must not be slower or faster
    over_max_cost: bool | None = None  # with max_cost: decided above it (True), below (False), or cannot tell


@dataclass
class CostDocument:
    """`fitbench cost --json` (fitbench/schemas/cost.schema.json, built from this)."""

    settings: CostSettings
    cells: list[CostCell]
    machine: str
    fitbench_version: str
    started: str
    finished: str | None = None
    complete: bool = False
    exit_status: int | None = None  # with max_cost: 0 / 1 / 3 as `fitbench cost` exits
    command: str = "cost"
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))  # the settings' tuples as the lists the file will hold


def plan(settings: CostSettings) -> list[Cell]:
    """The untreated cells (one per backend, api, jit, batch); each column is this cell with its treatment set.
    UsageError for what cannot be planned (a backend without the distribution engine, a batch N cannot split)."""
    from fitbench.measure.cells import plan_cells

    model = ModelChoice.from_dict(settings.model)
    if settings.of not in (DETERMINISM, DEVICES):
        raise UsageError(f"--of takes {DETERMINISM} or {DEVICES}, got {settings.of!r}")
    counts = (1, settings.devices) if settings.of == DEVICES else (1,)
    plan_cells(list(settings.apis), list(settings.jits), [settings.device], list(settings.batch_sizes),
               list(settings.backends), include_seed=False, model=model.name, model_apis=model.apis,
               device_counts=counts)  # checks the devices' side too
    return plan_cells(list(settings.apis), list(settings.jits), [settings.device], list(settings.batch_sizes),
                      list(settings.backends), include_seed=False, model=model.name, model_apis=model.apis)


def with_column(cell: Cell, column: str, settings: CostSettings) -> Cell:
    """The cell as a column measures it: the first column as planned, the others with the treatment."""
    from fitbench.determinism.switch import default_switch

    if column == settings.columns()[0]:
        return cell
    if settings.of == DEVICES:
        return replace(cell, device_count=settings.devices)
    return replace(cell, determinism=settings.switches.get(cell.stack.name) or default_switch(cell.stack.name))


def treatment(cell: Cell, settings: CostSettings) -> str:
    treated = with_column(cell, settings.columns()[1], settings)
    return treated.determinism or "" if settings.of == DETERMINISM else f"{treated.device_count} devices"


def _label(cell: Cell) -> str:
    model = "" if cell.model == "seed" else f"{cell.model} "
    jit = "on" if cell.jit else "off"
    return f"{cell.stack.name} {model}{cell.api} jit={jit} {cell.device} batch {cell.batch_size}"


Measure = Callable[[Cell], dict[str, Any]]  # a cell's RunRecord as a dict, measured in a fresh process


def run_cost(settings: CostSettings, measure: Measure | None = None, log: Callable[[str], None] = lambda s: None,
             keep: Callable[[CostDocument], None] = lambda d: None) -> CostDocument:
    """Measure every cell `settings.processes` times per column, interleaved, and decide. `measure` is the
    engine's fresh-process cell by default (a test gives a stand-in); `keep` gets the document after every
    round (an interrupted run keeps its rounds)."""
    measure = measure or _engine_measure(settings)
    base_cells = plan(settings)
    columns = settings.columns()
    doc = CostDocument(settings=settings, cells=[], machine=platform.node(), fitbench_version=__version__,
                       started=utc_stamp())
    for cell in base_cells:
        doc.cells.append(CostCell(cell=_label(cell), backend=cell.stack.name, api=cell.api, jit_requested=cell.jit,
                                  batch_size=cell.batch_size, treatment=treatment(cell, settings),
                                  step_time_s={c: [] for c in columns}, samples_per_s={c: None for c in columns},
                                  jit_effective={c: None for c in columns},
                                  switch_in_force={c: None for c in columns}))
    total = settings.processes * len(base_cells) * len(columns)
    done = 0
    for round_index in range(settings.processes):
        for i, (cell, row) in enumerate(zip(base_cells, doc.cells)):
            order = columns if (round_index + i) % 2 == 0 else columns[::-1]  # A B B', B' B A
            for column in order:
                done += 1
                what = f"switch {column}" if settings.of == DETERMINISM else column
                log(f"[{done}/{total}] round {round_index + 1}/{settings.processes}: {row.cell}, {what}")
                record = measure(with_column(cell, column, settings))
                if record.get("status") == "ok" and record.get("step_time_median_s"):
                    row.step_time_s[column].append(record["step_time_median_s"])
                    row.jit_effective[column] = record.get("jit_effective")
                    row.switch_in_force[column] = record.get("determinism_in_force")
                else:
                    row.errors[column] = f"{record.get('status')}: {record.get('error') or record.get('reason')}"
        _decide(doc.cells, settings)
        keep(doc)
    doc.complete, doc.finished = True, utc_stamp()
    doc.exit_status = exit_status(doc) if settings.max_cost else EXIT_OK
    keep(doc)
    return doc


def _engine_measure(settings: CostSettings) -> Measure:
    from fitbench.measure import engine
    from fitbench.models.seed import ModelSpec

    profile: Profile = PROFILES[settings.profile]
    run_settings = engine.RunSettings(cells=[], profile=profile, spec=ModelSpec(),
                                      model=ModelChoice.from_dict(settings.model), seed=settings.seed, floor=False,
                                      threads=settings.threads, cell_timeout_s=settings.cell_timeout_s)
    return lambda cell: engine.measure(cell, run_settings, None).to_dict()


def _decide(rows: list[CostCell], settings: CostSettings) -> None:
    """With against without per cell, and with again against with (the A/A); two processes a side at least
    (fewer: no test, the comparison stays null). Two families, each with Holm over its cells at `alpha`: what the
    treatment costs is one question, whether the protocol raises false alarms is another — in one family of 2 ×
    cells, 6 processes a side could never reach Holm's first level (the exact test's smallest p is 0.0022)."""
    columns = settings.columns()
    costs: dict[str, tuple[list[float], list[float]]] = {}
    aas: dict[str, tuple[list[float], list[float]]] = {}
    for r in rows:
        for column in columns:
            values = r.step_time_s[column]
            r.samples_per_s[column] = r.batch_size / statistics.median(values) if values else None
        costs[r.cell] = (r.step_time_s[columns[0]], r.step_time_s[columns[1]])
        if len(columns) > 2:
            aas[r.cell] = (r.step_time_s[columns[1]], r.step_time_s[columns[2]])
    decision_settings = DecisionSettings(alpha=settings.alpha, threshold=settings.threshold,
                                         min_change=settings.min_change, equivalence_alpha=settings.alpha)

    def family(tests: dict[str, tuple[list[float], list[float]]]) -> dict[str, Any]:
        tests = {name: (usable_values(a).values, usable_values(b).values) for name, (a, b) in tests.items()}
        tests = {name: pair for name, pair in tests.items() if len(pair[0]) >= 2 and len(pair[1]) >= 2}
        return decide(tests, decision_settings) if tests else {}

    cost_decisions, aa_decisions = family(costs), family(aas)
    for r in rows:
        cost, aa = cost_decisions.get(r.cell), aa_decisions.get(r.cell)
        r.cost = SpeedComparison.from_decision(cost, columns[1], columns[0]) if cost else None
        r.aa = SpeedComparison.from_decision(aa, columns[2], columns[1]) if aa else None
        r.over_max_cost = over_max_cost(r.cost, settings.max_cost) if settings.max_cost else None


def over_max_cost(cost: SpeedComparison | None, max_cost: float) -> bool | None:
    """Is the slow-down (off ÷ on samples/s) above `max_cost`? True when the whole interval is, False when the
    whole interval is below, None when it straddles it or there is no interval: a gate that cannot see says so."""
    if cost is None or cost.ci_low is None or cost.ci_high is None:
        return None
    slowest, fastest = 1 / cost.ci_low, 1 / cost.ci_high  # slow-down factors at the interval's ends
    if fastest > max_cost:
        return True
    if slowest <= max_cost:
        return False
    return None


def exit_status(doc: CostDocument) -> int:
    """With --max-cost: 1 when a cell's switch costs more than it (decided), else 3 when a cell cannot be
    told (interval across it, or no interval), else 0."""
    flags = [c.over_max_cost for c in doc.cells]
    if any(f is True for f in flags):
        return EXIT_OVER
    if any(f is None for f in flags):
        return EXIT_UNDECIDED
    return EXIT_OK


def aa_alarms(doc: CostDocument) -> list[str]:
    """Cells whose A/A (the treatment twice) came out slower or faster: a false alarm of the protocol."""
    return [c.cell for c in doc.cells if c.aa and c.aa.verdict in (SLOWER, FASTER)]


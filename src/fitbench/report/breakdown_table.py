"""`fitbench breakdown`'s table and notes, from the document's dict (fitbench.measure.breakdown)."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from fitbench.report.tables import StyledTable, fmt, on_off


def _phase_text(phase: dict[str, Any], processes: int, share: bool) -> str:
    if phase["ms_per_step"] is None:
        return "-"
    part = f"  {100 * phase['share']:3.0f} %" if share and phase.get("share") is not None else ""
    spread = f"\n[{phase['low_ms']:.2f}, {phase['high_ms']:.2f}]" if processes > 1 else ""  # a line of its own
    return f"{phase['ms_per_step']:.2f}{part}{spread}"


def breakdown_table(doc: dict[str, Any]) -> Table:
    """Rows: the phases, then the total; a column per backend (Keras 2 beside Keras 3 when both ran): ms per
    step, median over the processes [their range], and the share of the total."""
    cells = doc["cells"]
    first = cells[0] if cells else {"model": "?", "api": "?", "batch_size": "?"}
    # 100 columns: "measured as" beside two backends at most (a note says it for more)
    measured_as, share = len(cells) <= 2, True
    table = StyledTable(title=f"where a fit step's time goes: {first['model']}, {first['api']}, batch "
                        f"{first['batch_size']}; ms per step, median \\[range] over processes"
                        + (", share of the total" if share else ""))
    table.box, table.padding, table.show_edge = box.SIMPLE_HEAD, (0, 1, 0, 0), False
    table.add_column("phase", min_width=18)
    if measured_as:
        table.add_column("measured as", min_width=14)
    for c in cells:
        table.add_column(f"{c['stack']}\njit {on_off(c['jit_effective'])}, {c['processes']} proc.", justify="right",
                         no_wrap=True)
    names = [(p["name"], p["measured_as"]) for p in (cells[0]["phases"] if cells and cells[0]["phases"] else [])]
    def row(label: str, how: str, values: list[str]) -> None:
        table.add_row(label, *([how] if measured_as else []), *values)

    for i, (name, how) in enumerate(names):
        row(name, how, [_phase_text(c["phases"][i], c["processes"], share) if c["phases"] else "-" for c in cells])
    row("[bold]total[/]", "fit, progress bar", [fmt(c["total_ms"], ".2f") for c in cells])
    row("fit, verbose=0 (run's)", "fit", [fmt(c["fit_ms"], ".2f") for c in cells])
    row("custom step ÷ fit", "(raw/fit)", [fmt(c["custom_over_fit"], ".2f") for c in cells])
    row("traces of the step", "", ["-" if c["step_traces"] is None else str(c["step_traces"]) for c in cells])
    return table


def breakdown_lines(doc: dict[str, Any]) -> list[str]:
    """What the table cannot say: each backend's notes and errors."""
    lines = []
    cells = doc["cells"]
    if len(cells) > 2 and cells and cells[0]["phases"]:
        lines.append("each phase is the difference of two configurations: "
                     + "; ".join(f"{p['name']} = {p['measured_as']}" for p in cells[0]["phases"]))
    said: dict[str, list[str]] = {}  # a note once, with every backend it is about
    for c in cells:
        for note in c["notes"] + ([] if c["phases"] else ["no process came back"]):
            said.setdefault(note, []).append(c["stack"])
    return lines + [f"{', '.join(stacks)}: {note}" for note, stacks in said.items()]

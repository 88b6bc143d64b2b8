"""The tables of the determinism commands (determinism, replay, explain, cost, coverage), from the documents'
dicts, in the style of fitbench.report.tables."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table

from fitbench.report.tables import StyledTable, fmt, on_off
from fitbench.stacks import stack_name


def determinism_table(doc: dict[str, Any]) -> Table:
    jit = f"jit requested {on_off(doc['jit_requested'])}, effective {on_off(doc['jit_effective'])}"
    model = (doc.get("settings", {}).get("model") or {}).get("source", "seed")
    table = StyledTable(title=f"determinism of {model} on {stack_name(doc)}: bit-identity of training "
                        f"({jit})")
    table.box, table.padding, table.show_edge = box.SIMPLE_HEAD, (0, 1, 0, 0), False  # ten columns fit 100
    for name, width in (("a", 10), ("b", 10), ("scope", None), ("bits\nsame", None), ("init\nsame", None),
                        ("first\ndivergent\nepoch", None)):
        table.add_column(name, min_width=width)
    for name in ("max ULP", "max\n|Δ pred|", "cos(a, y)", "cos(b, y)"):  # numbers: never folded
        table.add_column(name, justify="right")
    for p in doc["pairs"]:  # "factory@run1" breaks at its "@", never inside a name (rich folds a long word)
        table.add_row(p["a"].replace("@", "\n@"), p["b"].replace("@", "\n@"), p["scope"].replace("_", " "),
                      "[green]yes[/]" if p["identical"] else "[bold red]NO[/]",
                      "yes" if p["identical_initial_weights"] else "no",
                      "-" if p["first_divergent_epoch"] is None else str(p["first_divergent_epoch"]),
                      str(p["max_ulp"]), f"{p['max_abs_diff_predictions']:.3g}",
                      fmt(p["cosine_a"], ".6f"), fmt(p["cosine_b"], ".6f"))
    return table


def replay_table(doc: Any) -> Table:
    """The replay's runs (a fitbench.determinism.replay.ReplayDocument)."""
    table = StyledTable(title=f"the question replayed: {doc.epochs} epochs, Functional then Sequential, same init")
    for name in ("optimizer", "keras", "status", "cos(functional, y)", "cos(sequential, y)", "bit-identical"):
        table.add_column(name)
    for r in doc.runs:
        table.add_row("shared" if r.optimizer_shared else "fresh each", r.keras, r.status,
                      fmt(r.cosine_functional, ".6f"), fmt(r.cosine_sequential, ".6f"),
                      "-" if r.identical is None else ("yes" if r.identical else "[bold red]no[/]"))
    return table


def _diff_text(row: dict[str, Any]) -> str:
    parts = []
    if row.get("value_a") is not None:
        parts.append(f"{row['value_a']:g} vs {row['value_b']:g}")
    if row.get("differing") is not None and row.get("size"):
        parts.append(f"{row['differing']} of {row['size']} values differ")
    if row.get("max_ulp") is not None:
        parts.append(f"max {row['max_ulp']} ULP")
    if row.get("max_abs_diff") is not None:
        parts.append(f"max |Δ| {row['max_abs_diff']:.3g}")
    if row.get("hash_b") == "absent" or row.get("hash_a") == "absent":
        parts.append("present in one stream only")
    return ", ".join(parts) or "differs"


def explain_report(doc: dict[str, Any]) -> str:
    """`fitbench explain`'s terminal report: step → layer → phase, with the numbers."""
    a, b = doc["streams"]
    st = doc["settings"]
    head = (f"fitbench explain: {a}  vs  {b}  ({st['backend']}, jit off, {doc['steps_a']} steps of stream a "
            f"instrumented, {doc['seconds']} s)")
    if doc["identical"]:
        return head + (f"\nidentical: every entry of every one of {doc['steps_a']} steps is bit-identical; "
                       "nothing to explain")
    first = doc["first_divergence"]
    step = doc["first_divergent_step"]
    names = first["name_a"] if first["name_a"] == first["name_b"] else f"{first['name_a']} | {first['name_b']}"
    lines = [head,
             f"they part at step {step} (counting from 0: epoch {doc['epoch']}, batch {doc['batch']} of "
             f"{doc['batches_per_epoch']}); " + ("every earlier step is bit-identical" if step else "the first step"),
             f"  first difference: phase {first['phase']!r}, {names}: {_diff_text(first)}"]
    before = ", ".join(f"{r['phase']} ({r['entries']})" for r in doc["identical_before"])
    lines.append(f"  identical before it in this step: {before or 'nothing'}")
    lines.append("  by phase at this step (execution order):")
    for row in doc["phases"]:
        state = ("identical" if not row["differing"] else
                 f"{row['differing']} of {row['entries']} differ, from {row['first_differing']}"
                 + (f", max {row['max_ulp']} ULP" if row.get("max_ulp") is not None else "")
                 + (f", max |Δ| {row['max_abs_diff']:.3g}" if row.get("max_abs_diff") is not None else ""))
        lines.append(f"    {row['phase']:<16} {state}")
    if doc.get("reproduced") is False:
        lines.append("  note: stream a, run again, did not repeat its own earlier steps: it is not reproducible "
                     "by itself either")
    if doc.get("note"):
        lines.append(f"  note: {doc['note']}")
    return "\n".join(lines)


def _comparison_text(comp: dict[str, Any] | None) -> str:
    """"0.93× [0.91, 0.95] slower" — a speed ratio, its interval and the verdict, coloured."""
    if not comp:
        return "-"
    colour = {"faster": "green", "slower": "red"}.get(comp["verdict"])
    verdict = f"[{colour}]{comp['verdict']}[/]" if colour else comp["verdict"]
    interval = (f"[{comp['ci_low']:.2f}, {comp['ci_high']:.2f}]" if comp["ci_low"] is not None
                else "[n too small]")
    return f"{comp['speed_ratio']:.2f}×\n{escape(interval)}\n{verdict}"


def cost_table(doc: dict[str, Any]) -> Table:
    """`fitbench cost`: per cell samples/s without and with the treatment (the determinism switch off and on, or
    1 device and N), with ÷ without with its interval and verdict, the jit Keras really ran on each side, and the
    A/A (the treatment twice)."""
    st = doc["settings"]
    of_devices = st.get("of") == "devices"
    base, treated, *again = list(doc["cells"][0]["step_time_s"]) if doc["cells"] else ["off", "on"]
    what = f"{st.get('devices')} simulated devices vs 1" if of_devices else "the determinism switch"
    short = ("N", "1") if of_devices else ("on", "off")
    table = StyledTable(title=f"what {what} costs: samples/s, {short[0]} ÷ {short[1]} (<1: slower) [95 % CI], "
                        f"{st['processes']} processes a side, interleaved; Holm α = {st['alpha']}")
    table.box, table.padding, table.show_edge = box.SIMPLE_HEAD, (0, 1, 0, 0), False
    table.add_column("cell", ratio=1, min_width=18)
    for name in short[::-1]:
        table.add_column(f"{name}/s", justify="right")
    table.add_column(f"jit ran\n({short[1]}→{short[0]})", no_wrap=True)
    table.add_column(f"{short[0]} ÷ {short[1]}", no_wrap=True)
    if again:
        table.add_column(f"A/A: {short[0]} ÷ {short[0]}", no_wrap=True)
    for c in doc["cells"]:
        jit_base, jit_treated = c["jit_effective"].get(base), c["jit_effective"].get(treated)
        jit = f"{on_off(jit_base)}→{on_off(jit_treated)}"
        if jit_base and jit_treated is False:
            jit = f"[bold red]{jit}[/]"
        rates = [fmt(c["samples_per_s"].get(k), ",.0f") for k in (base, treated)]
        label = f"{c['cell']}\n{c['treatment']}" if of_devices else f"{c['cell']}\nswitch {c['treatment']}"
        row = [escape(label), *rates, jit, _comparison_text(c.get("cost"))]
        if again:
            row.append(_comparison_text(c.get("aa")))
        table.add_row(*row)
    if of_devices and st.get("device") == "cpu":
        table.caption = ("simulated CPU devices share this machine's cores: this is what the distribution machinery "
                         "costs, not a speed-up")
    return table


def _sentence(text: str | None, limit: int = 110) -> str:
    """A framework's message cut to its first sentence (the JSON keeps the whole line)."""
    if not text:
        return ""
    end = text.find(". ", 30)
    text = text[:end + 1] if end > 0 else text
    return text if len(text) <= limit else text[:limit - 3].rsplit(" ", 1)[0] + " ..."


def coverage_table(doc: dict[str, Any]) -> list[Table]:
    """`fitbench coverage`: one table per backend, a row per layer (status, detail, its step compiled alone),
    and the whole model's compiled fit step under the switch in the caption."""
    tables = []
    model = (doc.get("model") or {}).get("source", "seed")
    for row in doc["rows"]:
        if not row["layers"]:
            continue
        compiled = ("compiled fit step: " + ("not asked" if row["compiled_runs"] is None else
                    f"raises: {row['compiled_error']}" if not row["compiled_runs"] else
                    "runs, compiled" if row["compiled_jit_effective"] else
                    "runs, but Keras turned compilation off (jit_effective false)"))
        table = StyledTable(title=f"{model} {doc['api']} on {row['backend']}, switch {row['switch']}"
                             f"{'' if row['switch_in_force'] else ' (NOT in force)'}: each layer's training step, "
                             f"{doc['processes']} processes, batch {doc['batch_size']}, {doc['device']}",
                       caption=escape(compiled))
        table.box, table.padding, table.show_edge = box.SIMPLE_HEAD, (0, 1, 0, 0), False
        details = any(layer["detail"] for layer in row["layers"])  # every layer identical: no empty column
        table.add_column("layer", ratio=1)
        table.add_column("params", justify="right")
        table.add_column("status", no_wrap=True)
        if details:
            table.add_column("detail", ratio=2)
        table.add_column("compiled alone", ratio=1)
        for layer in row["layers"]:
            colour = {"identical": "green", "not reached": "yellow"}.get(layer["status"], "red")
            cells = [escape(f"{layer['name']} ({layer['layer']})"), f"{layer['params']:,}",
                     f"[{colour}]{layer['status']}[/]"]
            cells += [escape(_sentence(layer["detail"]))] if details else []
            table.add_row(*cells, escape(_sentence(layer["jit"]) or "-"))
        tables.append(table)
    return tables

"""The tables people read in the terminal (rich), one per command, from the documents' dicts."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table

from fitbench.stacks import KERAS_2_BACKEND, TF_KERAS, stack_name


class StyledTable(Table):
    """A table that narrows to the terminal by wrapping its words, never its numbers: right-justified (number)
    columns do not wrap, text columns fold."""

    def add_column(self, header: str = "", *args: Any, **kwargs: Any) -> None:
        if kwargs.get("justify") == "right":
            kwargs.setdefault("no_wrap", True)
        else:
            kwargs.setdefault("overflow", "fold")
        super().add_column(header, *args, **kwargs)


def on_off(value: bool | None) -> str:
    return "-" if value is None else ("on" if value else "off")


def _jit_cell(record: dict[str, Any]) -> str:
    req, eff = record.get("jit_requested"), record.get("jit_effective")
    if eff is None or req == eff:
        return on_off(req)
    return f"{on_off(req)}→[bold red]{on_off(eff)}[/]"  # Keras overrode the request


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


MIN_GAP = 0.10  # "gap closed" only where plain fit is at least 10 % slower than the raw step


def _cell_text(r: dict[str, Any]) -> str:
    """What ran, in words that wrap: stack, model and api, jit (requested→effective), variant, device, kind."""
    model = r.get("model", "seed")
    api = r["api"] if model == "seed" else f"{model} {r['api']}"
    kind = " seed-epoch" if r["kind"] != "fit" else ""
    devices = f" ×{r['device_count']}" if (r.get("device_count") or 1) > 1 else ""
    return f"{_stack_text(r)} {api} jit {_jit_cell(r)} {_variant(r)} {r['device']}{devices}{kind}"


def _stack_text(r: dict[str, Any]) -> str:
    """The stack's name, with "det" where the cell ran with its determinism switch on."""
    return stack_name(r) + (" det" if r.get("determinism") else "")


def run_table(records: list[dict[str, Any]], wide: bool = False) -> Table:
    """The run's table. Compact (default): what a person reads first, numbers never cut (the text column wraps
    instead), fits 100 columns; `wide`: every column (GFLOP/s, % of the probe's peak, raw ms, first step, RSS)."""
    if wide:
        return _wide_run_table(records)
    table = StyledTable(title="fit loop (± = IQR % of the median step; raw/fit: the raw step ÷ fit's)",
                  caption="every column: --wide, or the JSON")
    table.add_column("cell", overflow="fold", ratio=1)
    for name in ("batch", "samples/s", "±", "step ms", "raw/fit", "status"):
        table.add_column(name, justify="left" if name == "status" else "right", no_wrap=True)
    for r in records:
        ok = r.get("status") == "ok"
        median = r.get("step_time_median_s") if ok else None
        spread = (100 * r["step_time_iqr_s"] / median) if ok and median and r.get("step_time_iqr_s") is not None \
            else None
        table.add_row(_cell_text(r), str(r["batch_size"]), fmt(r.get("samples_per_s") if ok else None, ",.0f"),
                      "-" if spread is None else f"{spread:.0f} %", fmt(median * 1e3 if median else None, ".2f"),
                      fmt(r.get("efficiency") if ok else None, ".2f"), str(r.get("status", "?")))
    return table


def not_ok_lines(records: list[dict[str, Any]]) -> list[str]:
    """Why cells were skipped or failed, once per distinct reason (the compact table has no room for it)."""
    reasons: dict[str, list[str]] = {}
    for r in records:
        if r.get("status") != "ok":
            reasons.setdefault(f"{r.get('status')}: {r.get('reason') or r.get('error') or '?'}", []).append(
                _cell_text(r) + f" batch {r['batch_size']}")
    return [f"{why} ({len(cells)} cell{'s' if len(cells) > 1 else ''})" for why, cells in reasons.items()]


def _wide_run_table(records: list[dict[str, Any]]) -> Table:
    table = StyledTable(title="fit loop (median over timed steps; seed epoch = 1 sample + validation; raw = the "
                        "framework's own training step; raw/fit = efficiency; 1st step s = the first step, compile "
                        "included; RSS = peak resident memory)")
    # what ran in one wrapping column, as in the compact table, headers on two lines and no column rules,
    # so that every number fits 100 columns
    table.box, table.padding, table.show_edge = box.SIMPLE_HEAD, (0, 1, 0, 0), False
    table.add_column("cell", min_width=16)
    for name in ("batch", "median\nms", "IQR\nms", "samples/s", "GFLOP\n/s", "%\nprobe", "raw\nms", "raw/\nfit",
                 "1st\nstep s", "RSS\nMiB"):
        table.add_column(name, justify="right")
    table.add_column("status", min_width=6)
    for r in records:
        ok = r.get("status") == "ok"
        raw = r.get("raw_step_time_s") if ok else None
        table.add_row(
            _cell_text(r),
            str(r["batch_size"]),
            fmt(r.get("step_time_median_s", 0) * 1e3 if ok else None, ".2f"),
            fmt(r.get("step_time_iqr_s", 0) * 1e3 if ok else None, ".2f"),
            fmt(r.get("samples_per_s") if ok else None, ",.0f"),
            fmt(r.get("gflops_per_s") if ok else None, ".3g"),
            fmt(r.get("pct_of_peak") if ok else None, ".1f"),
            fmt(raw * 1e3 if raw is not None else None, ".2f"),
            fmt(r.get("efficiency") if ok else None, ".2f"),
            fmt(r.get("first_step_s") if ok else None, ".2f"),
            fmt(r.get("peak_rss_bytes", 0) / 2**20 if ok else None, ".0f"),
            r.get("status", "?") if ok else f"{r.get('status')}: {r.get('reason') or r.get('error', '')}",
        )
    return table


def peak_lines(peaks: list[dict[str, Any]]) -> list[str]:
    """One line per peak probe of a run document, for the terminal after the tables."""
    return [f"peak probe {p['backend']} {p['device']}: " + (
        f"{p['gflops_per_s']:.1f} GFLOP/s ({p['n']}×{p['n']} float32 matmul, best of {len(p['times_s'] or [])}) "
        f"on {p['device_name']}" if p["status"] == "ok" else f"{p['status']}: {p['reason'] or p['error']}")
        for p in peaks]


def _variant(record: dict[str, Any]) -> str:
    variant = record.get("variant", "plain")  # records from before the tuned variant are plain
    k = record.get("steps_per_execution") or 1
    return f"{variant} (k={k})" if variant == "tuned" and k > 1 else variant


def _group_key(r: dict[str, Any]) -> tuple[Any, ...]:
    devices = f" ×{r['device_count']}" if (r.get("device_count") or 1) > 1 else ""
    return (_stack_text(r) + devices, r["kind"], r["api"], r["device"], r["batch_size"])


def jit_ratios(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """samples/s with XLA on over XLA off, per (backend, kind, api, variant, device, batch), by the
    *effective* jit."""
    ok = [r for r in records if r.get("status") == "ok"]
    out = []
    keys = sorted({(*_group_key(r), r.get("variant", "plain")) for r in ok})
    for key in keys:
        group = [r for r in ok if (*_group_key(r), r.get("variant", "plain")) == key]
        on = next((r for r in group if r["jit_effective"]), None)
        off = next((r for r in group if not r["jit_effective"]), None)
        if on and off:
            out.append({"backend": key[0], "kind": key[1], "api": key[2], "device": key[3], "batch_size": key[4],
                        "variant": key[5], "ratio_on_off": on["samples_per_s"] / off["samples_per_s"]})
    return out


def jit_ratio_table(records: list[dict[str, Any]]) -> Table:
    table = StyledTable(title="XLA speed-up: samples/s with jit on ÷ jit off (effective jit; >1 means XLA is faster)")
    for name in ("backend", "kind", "api", "variant", "device", "batch", "on/off"):
        table.add_column(name, justify="right" if name in ("batch", "on/off") else "left")
    for r in jit_ratios(records):
        table.add_row(r["backend"], r["kind"], r["api"], r["variant"], r["device"], str(r["batch_size"]),
                      f"{r['ratio_on_off']:.2f}×")
    return table


def keras_ratios(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keras 3 on TensorFlow against tf-keras (Keras 2) in the same cell (kind, api, device, batch, variant,
    requested jit): samples/s Keras 3 ÷ Keras 2 (>1: Keras 3 is faster). One process each: an anecdote,
    which is why `fitbench versions` repeats processes for a claim."""
    ok = [r for r in records if r.get("status") == "ok" and r.get("backend", KERAS_2_BACKEND) == KERAS_2_BACKEND]
    out = []
    for r2 in (r for r in ok if stack_name(r) == TF_KERAS):
        key = (r2["kind"], r2["api"], r2["device"], r2["batch_size"], r2.get("variant", "plain"), r2["jit_requested"])
        r3 = next((r for r in ok if stack_name(r) == KERAS_2_BACKEND and
                   (r["kind"], r["api"], r["device"], r["batch_size"], r.get("variant", "plain"),
                    r["jit_requested"]) == key), None)
        if r3:
            out.append({"kind": key[0], "api": key[1], "device": key[2], "batch_size": key[3], "variant": key[4],
                        "jit_requested": key[5], "jit_effective_keras2": r2["jit_effective"],
                        "jit_effective_keras3": r3["jit_effective"], "keras2_samples_per_s": r2["samples_per_s"],
                        "keras3_samples_per_s": r3["samples_per_s"],
                        "ratio_3_over_2": r3["samples_per_s"] / r2["samples_per_s"]})
    return out


def keras_ratio_table(records: list[dict[str, Any]]) -> Table:
    table = StyledTable(title="Keras 3 vs Keras 2 (tf-keras) on TensorFlow: samples/s 3 ÷ 2 (>1: Keras 3 is faster; "
                        "one process each)")
    # short headers: the model's api (`factory`) and the variant must not fold at 100 columns
    for name in ("kind", "api", "variant", "device", "batch", "jit 2/3", "Keras 2 /s", "Keras 3 /s", "3 ÷ 2"):
        table.add_column(name, justify="left" if name in ("kind", "api", "variant", "device", "jit 2/3") else "right",
                         **({"no_wrap": True} if name in ("api", "variant") else {}))
    for r in keras_ratios(records):
        table.add_row(r["kind"], r["api"], r["variant"], r["device"], str(r["batch_size"]),
                      f"{on_off(r['jit_effective_keras2'])} / {on_off(r['jit_effective_keras3'])}",
                      f"{r['keras2_samples_per_s']:,.0f}", f"{r['keras3_samples_per_s']:,.0f}",
                      f"{r['ratio_3_over_2']:.2f}×")
    return table


def determinism_costs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each cell with its determinism switch on against the same cell with it off (stack, kind, api, requested
    jit, variant, device, batch): samples/s on ÷ off (<1: the switch costs), and the jit Keras really ran on
    each side. One process each: `fitbench cost` repeats processes for an interval."""
    ok = [r for r in records if r.get("status") == "ok"]

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (stack_name(r), r["kind"], r["api"], r["jit_requested"], r.get("variant", "plain"), r["device"],
                r["batch_size"])

    out = []
    for on in (r for r in ok if r.get("determinism")):
        off = next((r for r in ok if not r.get("determinism") and key(r) == key(on)), None)
        if off:
            out.append({"stack": key(on)[0], "cell": _cell_text(off), "batch_size": on["batch_size"],
                        "switch": on["determinism"], "off_samples_per_s": off["samples_per_s"],
                        "on_samples_per_s": on["samples_per_s"], "jit_effective_off": off["jit_effective"],
                        "jit_effective_on": on["jit_effective"],
                        "ratio_on_off": on["samples_per_s"] / off["samples_per_s"]})
    return out


def determinism_cost_run_table(records: list[dict[str, Any]]) -> Table:
    table = StyledTable(title="the determinism switch: samples/s on ÷ off (<1: it costs; one process each, an "
                        "anecdote: `fitbench cost` gives the interval)")
    table.add_column("cell (switch off)", ratio=1)
    for name in ("batch", "switch", "jit on", "off/s", "on/s", "on ÷ off"):
        table.add_column(name, justify="left" if name in ("switch", "jit on") else "right")
    for c in determinism_costs(records):
        jit = on_off(c["jit_effective_off"]) + ("" if c["jit_effective_on"] == c["jit_effective_off"]
                                                 else f"→[bold red]{on_off(c['jit_effective_on'])}[/]")
        table.add_row(c["cell"], str(c["batch_size"]), c["switch"], jit, f"{c['off_samples_per_s']:,.0f}",
                      f"{c['on_samples_per_s']:,.0f}", f"{c['ratio_on_off']:.2f}×")
    return table


def device_scaling(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each cell on N devices against the same cell on one device: strong scaling (the same global batch:
    samples/s N ÷ 1, efficiency = that ÷ N) and, where the one-device cell with the same per-device batch ran,
    weak scaling (global batch N × b against b: samples/s N ÷ (N × samples/s 1))."""
    ok = [r for r in records if r.get("status") == "ok" and r["kind"] == "fit"]

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (stack_name(r), r["api"], r["jit_requested"], r.get("variant", "plain"), r["device"],
                r.get("determinism"))

    out = []
    for many in (r for r in ok if (r.get("device_count") or 1) > 1):
        n = many["device_count"]
        ones = [r for r in ok if (r.get("device_count") or 1) == 1 and key(r) == key(many)]
        same = next((r for r in ones if r["batch_size"] == many["batch_size"]), None)
        weak = next((r for r in ones if r["batch_size"] * n == many["batch_size"]), None)
        if same or weak:
            out.append({"cell": _cell_text({**many, "device_count": 1}), "devices": n,
                        "batch_size": many["batch_size"], "per_device_batch": many["batch_size"] // n,
                        "samples_per_s": many["samples_per_s"],
                        "strong_speedup": many["samples_per_s"] / same["samples_per_s"] if same else None,
                        "strong_efficiency": many["samples_per_s"] / same["samples_per_s"] / n if same else None,
                        "weak_efficiency": many["samples_per_s"] / (n * weak["samples_per_s"]) if weak else None})
    return out


def device_scaling_table(records: list[dict[str, Any]]) -> Table:
    simulated = any(r.get("device") == "cpu" for r in records if (r.get("device_count") or 1) > 1)
    table = StyledTable(title="data parallelism: N devices against one (strong: the same global batch; weak: the same "
                        "batch per device; one process each)",
                   caption=("simulated CPU devices share this machine's cores: the speed-up says nothing about "
                            "real devices; what it measures is the cost of the distribution itself"
                            if simulated else None))
    table.add_column("cell", ratio=1)
    for name in ("devices", "batch", "per device", "samples/s", "speed-up", "strong eff.", "weak eff."):
        table.add_column(name, justify="right")
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.0f} %"

    for s in device_scaling(records):
        table.add_row(s["cell"], str(s["devices"]), str(s["batch_size"]), str(s["per_device_batch"]),
                      f"{s['samples_per_s']:,.0f}",
                      "-" if s["strong_speedup"] is None else f"{s['strong_speedup']:.2f}×",
                      pct(s["strong_efficiency"]), pct(s["weak_efficiency"]))
    return table


def knobs(record: dict[str, Any]) -> str:
    """The speed knobs a fit record ran with, e.g. "spe=8, prefetch" or "data on device" ("none": plain)."""
    on = [f"spe={record['steps_per_execution']}"] if (record.get("steps_per_execution") or 1) > 1 else []
    on += ["prefetch"] if record.get("prefetch") else []
    on += ["data on device"] if record.get("data_on_device") else []
    return ", ".join(on) or "none"


def tuned_gains(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tuned vs plain fit at the same (backend, api, device, batch, effective jit).

    `gain` = samples/s tuned ÷ plain. `gap_closed` is the fraction of the plain→raw gap the tuned variant
    closes, with each cell's step time in units of the raw step measured in its own process (1/efficiency),
    so a noisy machine shifts both the same way: (plain/raw − tuned/raw) ÷ (plain/raw − 1). None when plain
    fit is within MIN_GAP of the raw step (a gap of 1 % made −1733 % of noise), or either cell has no raw
    step. Above 1: the tuned variant beats the raw per-step loop (it skips the host round trip)."""
    ok = [r for r in records if r.get("status") == "ok" and r["kind"] == "fit"]
    out = []
    for key in sorted({(*_group_key(r), r["jit_effective"]) for r in ok}):
        group = [r for r in ok if (*_group_key(r), r["jit_effective"]) == key]
        plain = next((r for r in group if r.get("variant", "plain") == "plain"), None)
        tuned = next((r for r in group if r.get("variant") == "tuned"), None)
        if not (plain and tuned):
            continue
        gap_closed = None
        if plain.get("efficiency") and tuned.get("efficiency") and 1 / plain["efficiency"] - 1 >= MIN_GAP:
            plain_norm, tuned_norm = 1 / plain["efficiency"], 1 / tuned["efficiency"]
            gap_closed = (plain_norm - tuned_norm) / (plain_norm - 1)
        out.append({"backend": key[0], "api": key[2], "device": key[3], "batch_size": key[4], "jit_effective": key[5],
                    "steps_per_execution": tuned.get("steps_per_execution"), "knobs": knobs(tuned),
                    "plain_samples_per_s": plain["samples_per_s"], "tuned_samples_per_s": tuned["samples_per_s"],
                    "gain": tuned["samples_per_s"] / plain["samples_per_s"],
                    "efficiency_plain": plain.get("efficiency"), "efficiency_tuned": tuned.get("efficiency"),
                    "gap_closed": gap_closed})
    return out


def _gap_text(gap_closed: float | None) -> str:
    """The share of the plain→raw gap closed; past the raw step it is no longer a share of anything."""
    if gap_closed is None:
        return "-"
    return "≥100 %" if gap_closed >= 1 else f"{100 * gap_closed:.0f} %"


def tuned_gain_table(records: list[dict[str, Any]]) -> Table:
    table = StyledTable(title="tuned fit vs plain: gain, raw/fit plain → tuned, share of the plain→raw gap closed",
                   caption="tuned: steps_per_execution, prefetch (TensorFlow) or data on the device (JAX, PyTorch); "
                           "gap closed ≥100 %: tuned fit beats the raw per-step loop (it skips the host round "
                           "trip; the JSON has the number)")
    table.add_column("cell", ratio=1)
    for name in ("batch", "plain/s", "tuned/s", "gain", "raw/fit", "gap closed"):
        table.add_column(name, justify="right")
    for g in tuned_gains(records):
        table.add_row(f"{g['backend']} {g['api']} {g['device']} jit {on_off(g['jit_effective'])}: {g['knobs']}",
                      str(g["batch_size"]), f"{g['plain_samples_per_s']:,.0f}", f"{g['tuned_samples_per_s']:,.0f}",
                      f"{g['gain']:.2f}×",
                      f"{fmt(g['efficiency_plain'], '.2f')}→{fmt(g['efficiency_tuned'], '.2f')}",
                      _gap_text(g["gap_closed"]))
    return table


def calibration_table(calibration: Any, settings: Any) -> Table:
    """Each calibrated cell's per-process median, spread and its 80 % upper confidence bound, the change it
    could detect with the processes it ran (80 % power, as every alert row says), and the processes per
    commit an alert with two stages plans for 5 % and for the threshold (fitbench.regress.alert.plan_stages,
    all cells of the calibration tested together under Holm)."""
    from fitbench.regress.alertdoc import DEFAULT_STAGES
    from fitbench.regress.decide import spread_upper_bound
    from fitbench.regress.ranksum import min_detectable_change, processes_needed
    from fitbench.regress.unpaired import MAX_TOTAL_PROCESSES, PLANNING_POWER, PLANNING_SPREAD_CONFIDENCE

    cells = calibration.cells
    strictest = settings.change_level() / max(1, len(cells))
    planning_level = settings.change_level(DEFAULT_STAGES) / max(1, len(cells))
    bound_pct = f"{100 * PLANNING_SPREAD_CONFIDENCE:.0f} %"
    table = StyledTable(title=f"between-process spread, {calibration.processes} processes per cell, commit "
                        f"{calibration.commit[:10]} (threads: {calibration.threads}); an alert plans "
                        f"{100 * PLANNING_POWER:.0f} % power at the {bound_pct} upper bound of each spread, two stages")
    for col in ("cell", "median", "between-process CV (robust)", f"{bound_pct} upper bound",
                f"detectable with {calibration.processes}", "processes per commit for 5 % (both stages)",
                f"processes per commit for {100 * settings.threshold:g} % (both stages)"):
        table.add_column(col)
    for c in cells:
        n = len(c.values)
        mdc = min_detectable_change(c.log_sd, n, n, strictest)
        bound = spread_upper_bound(c.log_sd, n, PLANNING_SPREAD_CONFIDENCE)
        needs = [processes_needed(bound, change, planning_level, PLANNING_POWER, MAX_TOTAL_PROCESSES)
                 for change in (0.05, settings.threshold)]
        table.add_row(escape(c.key), f"{c.median * 1e3:.3f} ms" if c.unit == "seconds" else f"{c.median:.4g}",
                      f"{100 * c.log_sd:.1f} %", f"{100 * bound:.1f} %", f"{100 * mdc:.1f} %",
                      *[str(need) if need else f">{MAX_TOTAL_PROCESSES}" for need in needs])
    return table


def gate_table(doc: dict[str, Any]) -> Table:
    """`fitbench gate`'s rows: one observation per pytest-benchmark session."""
    def num(value: Any, fmt: str) -> str:
        return "–" if value is None else format(value, fmt)

    table = StyledTable(title=f"{len(doc['base'])} base vs {len(doc['head'])} head sessions, one observation per "
                              "session")
    for col in ("benchmark", "base", "head", "ratio [95 % CI]", "between-session CV", "detectable", "p (Holm)",
                "p equivalent (Holm)", "change"):
        table.add_column(col)
    for r in doc["rows"]:
        ratio = "–" if r["ratio"] is None else f"{r['ratio']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
        table.add_row(escape(r["benchmark"]), num(r["before"] and r["before"] * 1e3, ".3f") + " ms",
                      num(r["after"] and r["after"] * 1e3, ".3f") + " ms", ratio,
                      num(r["between_session_cv"] and 100 * r["between_session_cv"], ".1f") + " %",
                      num(r["min_detectable_change"] and 100 * r["min_detectable_change"], ".1f") + " %",
                      num(r["p_adjusted"], ".2g"), num(r["p_equivalence_adjusted"], ".2g"), r["change"])
    return table


def version_columns_table(columns: list[dict[str, Any]]) -> Table:
    """`fitbench versions`: each column's environment, what it really runs, and why one was skipped."""
    table = StyledTable(title="versions: one environment per column (the first is the reference)")
    for name in ("column", "status", "keras", "tensorflow", "tf-keras", "jax", "torch", "rounds", "note"):
        table.add_column(name)
    for c in columns:
        v = c.get("versions") or {}
        note = c.get("reason") or "; ".join([*(c.get("pip_warnings") or []), *(c.get("failures") or [])])
        table.add_row(escape(c["label"]), c["status"] + (" (cached)" if c.get("cached") and c.get("path") else ""),
                      *(v.get(k, "-") for k in ("keras", "tensorflow", "tf-keras", "jax", "torch")),
                      str(c.get("rounds_run", "-")), escape(note or ""))
    return table


def versions_table(doc: dict[str, Any]) -> Table:
    """A column per version: samples/s (median over processes), and against the reference the speed ratio
    with its interval and the verdict (faster / slower / equivalent / inconclusive)."""
    labels = [c["env"]["label"] for c in doc["columns"]]
    skipped = {c["env"]["label"]: c["env"]["reason"] for c in doc["columns"] if c["env"]["status"] != "ready"}
    st = doc["settings"]
    table = StyledTable(title=f"samples/s per version, {st['processes']} processes each, interleaved; × = speed vs "
                        f"{doc['reference']} (or, marked, Keras 3 vs tf-keras in the same column) [95 % CI], "
                        f"Holm α = {st['alpha']} over every ratio")
    table.add_column("cell")
    for label in labels:  # a line per fact, so three versions fit 100 columns; min_width keeps a number whole
        table.add_column(escape(label), justify="right", no_wrap=False, overflow="fold", min_width=18)
    for row in doc["cells"]:
        cells = []
        for label in labels:
            rate = row["samples_per_s"].get(label)
            n = len(row["step_time_s"].get(label) or [])
            if label in skipped:
                cells.append(escape(f"skipped: {skipped[label]}"))
                continue
            text = f"{rate:,.0f} (n={n})" if rate else escape(row["errors"].get(label, "-"))
            for comp in (c for c in row["comparisons"] if c["column"] == label):
                colour = {"faster": "green", "slower": "red"}.get(comp["verdict"])
                verdict = f"[{colour}]{comp['verdict']}[/]" if colour else comp["verdict"]
                versus = " vs Keras 2" if comp["reference"].startswith(TF_KERAS) else ""
                interval = (f"[{comp['ci_low']:.2f}, {comp['ci_high']:.2f}]" if comp["ci_low"] is not None
                            else "[too few processes]")
                text += f"\n{comp['speed_ratio']:.2f}× {interval}\n{verdict}{versus}"
            cells.append(text)
        table.add_row(row["cell"], *cells)
    return table

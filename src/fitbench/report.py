"""Output: JSON documents written atomically, and the tables people read in the terminal."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from rich.table import Table

from fitbench.errors import UsageError


def check_output_path(path: str) -> str:
    """Refuse, before any work starts, a path that cannot be written."""
    target = os.path.abspath(path)
    parent = os.path.dirname(target)
    if os.path.isdir(target):
        raise UsageError(f"cannot write {path}: it is a directory")
    if not os.path.isdir(parent):
        raise UsageError(f"cannot write {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (os.path.exists(target) and not os.access(target, os.W_OK)):
        raise UsageError(f"cannot write {path}: permission denied")
    return target


def write_json_atomic(path: str, doc: dict[str, Any]) -> None:
    """Write the whole document to a temporary file beside `path`, then rename: never half a file."""
    target = os.path.abspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".fitbench-", suffix=".json", dir=os.path.dirname(target))
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2, allow_nan=False)
            f.write("\n")
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _on_off(value: bool | None) -> str:
    return "-" if value is None else ("on" if value else "off")


def _jit_cell(record: dict[str, Any]) -> str:
    req, eff = record.get("jit_requested"), record.get("jit_effective")
    if eff is None or req == eff:
        return _on_off(req)
    return f"{_on_off(req)}→[bold red]{_on_off(eff)}[/]"  # Keras overrode the request


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def run_table(records: list[dict[str, Any]]) -> Table:
    table = Table(title="fit loop (median over timed steps; seed epoch = 1 sample + validation)")
    for name, justify in (("kind", "left"), ("api", "left"), ("jit req→eff", "left"), ("device", "left"),
                          ("batch", "right"), ("median ms", "right"), ("IQR ms", "right"), ("samples/s", "right"),
                          ("GFLOP/s", "right"), ("first step s", "right"), ("peak RSS MiB", "right"),
                          ("status", "left")):
        table.add_column(name, justify=justify)
    for r in records:
        ok = r.get("status") == "ok"
        table.add_row(
            r["kind"], r["api"], _jit_cell(r), r["device"], str(r["batch_size"]),
            _fmt(r.get("step_time_median_s", 0) * 1e3 if ok else None, ".2f"),
            _fmt(r.get("step_time_iqr_s", 0) * 1e3 if ok else None, ".2f"),
            _fmt(r.get("samples_per_s") if ok else None, ",.0f"),
            _fmt(r.get("gflops_per_s") if ok else None, ".3g"),
            _fmt(r.get("first_step_s") if ok else None, ".2f"),
            _fmt(r.get("peak_rss_bytes", 0) / 2**20 if ok else None, ".0f"),
            r.get("status", "?") if ok else f"{r.get('status')}: {r.get('reason') or r.get('error', '')}",
        )
    return table


def jit_ratios(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """samples/s with XLA on over XLA off, per (kind, api, device, batch), by the *effective* jit."""
    ok = [r for r in records if r.get("status") == "ok"]
    out = []
    keys = sorted({(r["kind"], r["api"], r["device"], r["batch_size"]) for r in ok})
    for key in keys:
        group = [r for r in ok if (r["kind"], r["api"], r["device"], r["batch_size"]) == key]
        on = next((r for r in group if r["jit_effective"]), None)
        off = next((r for r in group if not r["jit_effective"]), None)
        if on and off:
            out.append({"kind": key[0], "api": key[1], "device": key[2], "batch_size": key[3],
                        "ratio_on_off": on["samples_per_s"] / off["samples_per_s"]})
    return out


def jit_ratio_table(records: list[dict[str, Any]]) -> Table:
    table = Table(title="XLA speed-up: samples/s with jit on ÷ jit off (effective jit; >1 means XLA is faster)")
    for name in ("kind", "api", "device", "batch", "on/off"):
        table.add_column(name, justify="right" if name in ("batch", "on/off") else "left")
    for r in jit_ratios(records):
        table.add_row(r["kind"], r["api"], r["device"], str(r["batch_size"]), f"{r['ratio_on_off']:.2f}×")
    return table


def determinism_table(doc: dict[str, Any]) -> Table:
    jit = f"jit requested {_on_off(doc['jit_requested'])}, effective {_on_off(doc['jit_effective'])}"
    table = Table(title=f"determinism: bit-identity of training ({jit})")
    for name in ("a", "b", "scope", "identical", "init identical", "first divergent epoch", "max ULP",
                 "max |Δ pred|", "cos(a, y)", "cos(b, y)"):
        table.add_column(name)
    for p in doc["pairs"]:
        table.add_row(p["a"], p["b"], p["scope"], "[green]yes[/]" if p["identical"] else "[bold red]NO[/]",
                      "yes" if p["identical_initial_weights"] else "no",
                      "-" if p["first_divergent_epoch"] is None else str(p["first_divergent_epoch"]),
                      str(p["max_ulp"]), f"{p['max_abs_diff_predictions']:.3g}",
                      f"{p['cosine_a']:.6f}", f"{p['cosine_b']:.6f}")
    return table


def seed_table(doc: dict[str, Any]) -> Table:
    table = Table(title=f"the seed question replayed: {doc['epochs']} epochs, Functional then Sequential, same init")
    for name in ("optimizer", "keras", "status", "cos(functional, y)", "cos(sequential, y)", "bit-identical"):
        table.add_column(name)
    for r in doc["runs"]:
        table.add_row("shared" if r["optimizer_shared"] else "fresh each", r["keras"], r["status"],
                      _fmt(r.get("cosine_functional"), ".6f"), _fmt(r.get("cosine_sequential"), ".6f"),
                      "-" if r.get("identical") is None else ("yes" if r["identical"] else "[bold red]no[/]"))
    return table

"""Every table fitbench prints fits a 100-column terminal without cutting a number: fed the documents fitbench
wrote in docs/results (real runs) where there are some, synthetic ones where not."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table

from fitbench.report import determinism_tables, tables

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


def _load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def _run_records() -> list[dict]:
    return _load("run-default-2026-11-30.json")["records"]


def _versions(name: str) -> dict:
    return _load(name)


def _version_columns(name: str) -> list[dict]:
    doc = _load(name)
    return [{**c["env"], "rounds_run": c["rounds_run"], "failures": c["failures"]} for c in doc["columns"]]


def _calibration() -> Table:
    from fitbench.regress.calibration import Calibration
    from fitbench.regress.decide import DecisionSettings

    return tables.calibration_table(Calibration.from_dict(_load("calibration-base-2026-11-27.json")),
                                    DecisionSettings())


def _determinism() -> Table:
    from fitbench.determinism.compare import PairResult

    pairs = [PairResult(a=f"subclassed@run{i}", b=f"functional@run{i + 1}", scope="run_to_run", identical=i != 2,
                        identical_initial_weights=True, identical_per_epoch=[True, i != 2],
                        first_divergent_epoch=None if i != 2 else 1, max_ulp=0 if i != 2 else 123456789,
                        max_ulp_weights=0, max_ulp_predictions=0, max_abs_diff_predictions=1.2345e-7,
                        cosine_a=0.6543210987, cosine_b=0.6543210988, jit_effective_a=True,
                        jit_effective_b=True).to_dict() for i in range(1, 4)]
    return determinism_tables.determinism_table({"backend": "tensorflow", "keras_major": 3, "jit_requested": True,
                                     "jit_effective": False, "settings": {"model": None}, "pairs": pairs})


def _replay() -> Table:
    from fitbench.determinism import replay

    runs = [replay.ReplayRun(keras=k, optimizer_shared=s, status="ok", cosine_functional=0.6543210987,
                             cosine_sequential=0.1960000001, identical=not s)
            for k in (replay.KERAS3, replay.LEGACY) for s in (True, False)]
    return determinism_tables.replay_table(replay.summarise(runs, 200, legacy_missing=False))


def _switch_run_records() -> list[dict]:
    """A run with --determinism both: the cost document's cells as run records (one process each)."""
    doc = _load("cost-determinism-2026-11-30.json")
    records = []
    for c in doc["cells"]:
        for column, switch in (("off", None), ("on", c["treatment"])):
            records.append({"status": "ok", "backend": c["backend"].replace("tf-keras", "tensorflow"),
                            "keras_major": 2 if c["backend"] == "tf-keras" else 3, "kind": "fit", "api": c["api"],
                            "jit_requested": c["jit_requested"], "jit_effective": c["jit_effective"][column],
                            "variant": "plain", "device": "cpu", "batch_size": c["batch_size"],
                            "determinism": switch, "samples_per_s": c["samples_per_s"][column]})
    return records


def _one(tables_: list[Table]) -> Table:
    """coverage prints a table per backend: the widest is the one that must fit."""
    def width(table: Table) -> int:
        console = Console(width=100, record=True, file=io.StringIO())
        console.print(table, crop=False)
        return max(len(line) for line in console.export_text().splitlines())

    return max(tables_, key=width)


def _gate() -> Table:
    row = {"benchmark": "benchmarks/micro/test_micro.py::test_train_step[b256-functional-jit_on]",
           "before": 0.0116128, "after": 0.0127432, "change": "inconclusive", "ratio": 1.0973, "ci_low": 0.92344,
           "ci_high": 1.12223, "p_adjusted": 0.0123, "p_equivalence_adjusted": 0.9876, "between_session_cv": 0.0703,
           "min_detectable_change": 0.26008}
    return tables.gate_table({"base": [1] * 6, "head": [1] * 6, "rows": [row] * 3})


TABLES = {
    "run": lambda: tables.run_table(_run_records()),
    "run --wide": lambda: tables.run_table(_run_records(), wide=True),
    "XLA speed-up": lambda: tables.jit_ratio_table(_run_records()),
    "Keras 3 vs 2": lambda: tables.keras_ratio_table(_run_records()),
    "tuned vs plain": lambda: tables.tuned_gain_table(_run_records()),
    "versions (3 columns)": lambda: tables.versions_table(_versions("versions-keras-2026-11-27-tf-jax.json")),
    "versions (torch)": lambda: tables.versions_table(_versions("versions-keras-2026-11-27-torch.json")),
    "versions' environments": lambda: tables.version_columns_table(
        _version_columns("versions-keras-2026-11-27-tf-jax.json")),
    "calibrate": _calibration,
    "determinism": _determinism,
    "replay": _replay,
    "gate": _gate,
    "cost": lambda: determinism_tables.cost_table(_load("cost-determinism-2026-11-30.json")),
    "cost --of devices": lambda: determinism_tables.cost_table(_load("cost-devices-4-jax-2026-11-30.json")),
    "run --devices": lambda: tables.device_scaling_table(
        [{"status": "ok", "backend": "jax", "kind": "fit", "api": "functional", "jit_requested": True,
          "jit_effective": True, "variant": "plain", "device": "cpu", "batch_size": b, "device_count": n,
          "samples_per_s": c["samples_per_s"][col]}
         for c in _load("cost-devices-4-jax-2026-11-30.json")["cells"]
         for n, col, b in ((1, "1 device", c["batch_size"]), (4, "4 devices", c["batch_size"]))]),
    "determinism switch (run)": lambda: tables.determinism_cost_run_table(_switch_run_records()),
    **{f"coverage ({model})": (lambda model=model: _one(determinism_tables.coverage_table(
        _load(f"coverage-{model}-2026-11-30.json")))) for model in ("conv", "text", "attention")},
}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_the_table_fits_100_columns_without_cutting_a_number(name, monkeypatch):
    from fitbench.cli import make_console

    table = TABLES[name]()
    monkeypatch.setenv("COLUMNS", "100")
    console = make_console()  # the commands' own console (soft wrap on for text), output not a terminal
    console.file, console.record = io.StringIO(), True
    console.print(table, crop=False)  # rich would crop a line too wide: the test must see it
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 100, text
    assert "…" not in text, text
    # every number of the table's cells is shown whole: a cut one would lose digits at a line's end
    body = text.split("━", 1)[-1] if "━" in text else text
    for cell in (c for column in table.columns for c in column._cells):
        for number in re.findall(r"\d[\d,]*\.\d+|\d{1,3}(?:,\d{3})+", str(cell)):
            assert number in body, (name, number)


def test_every_help_fits_100_columns(monkeypatch):
    from fitbench.cli import build_parser

    monkeypatch.setenv("COLUMNS", "100")  # what argparse wraps its own part to
    parser = build_parser()
    [sub] = [a for a in parser._actions if a.dest == "command"]
    for name, text in [("fitbench", parser.format_help())] + [(n, p.format_help()) for n, p in sub.choices.items()]:
        too_wide = [line for line in text.splitlines() if len(line) > 100]
        assert not too_wide, (name, too_wide)


def test_output_that_is_not_a_terminal_is_100_columns_or_columns(monkeypatch):
    from fitbench.cli import _columns

    monkeypatch.delenv("COLUMNS", raising=False)
    assert _columns() == 100
    monkeypatch.setenv("COLUMNS", "132")
    assert _columns() == 132
    monkeypatch.setenv("COLUMNS", "junk")
    assert _columns() == 100


def test_a_pair_name_breaks_at_its_run_never_inside_a_word():
    import io

    from rich.console import Console

    console = Console(width=100, record=True, file=io.StringIO())
    console.print(_determinism(), crop=False)
    text = console.export_text()
    assert "subclassed" in text and "@run1" in text and "functional" in text
    assert "subclassed@ru" not in text and "subclass\n" not in text  # the name whole, the run on its own line

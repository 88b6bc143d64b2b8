"""JSON Schemas of fitbench's documents, shipped in fitbench/schemas/ and built here from the dataclasses.

`python -m fitbench.schema` rewrites the shipped files; tests/test_schema.py checks that they match what
is built here and validates real `run`, `determinism`, `replay` and `alert` documents against them. Each
document carries `command` and `schema_version`; `validate(doc)` picks the schema from `command`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any

DRAFT = "https://json-schema.org/draft/2020-12/schema"
KINDS = ("run", "determinism", "replay", "alert", "explain", "versions", "bisect", "history", "gate", "cost",
         "coverage", "calibrate", "breakdown")

_SIMPLE = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array",
           type(None): "null", Any: None}


def _type_schema(hint: Any, refs: dict[type, str]) -> dict[str, Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_type_schema(a, refs) for a in args]}
    if hint in refs:
        return {"$ref": f"#/$defs/{refs[hint]}"}
    if origin is list:
        return {"type": "array", "items": _type_schema(args[0], refs)} if args else {"type": "array"}
    if origin is tuple:  # a settings tuple crosses JSON as a list
        return {"type": "array", "items": _type_schema(args[0], refs)} if args else {"type": "array"}
    if origin is dict:
        return {"type": "object"}
    if hint is float:  # JSON has one number type: an integral float may come back as an int
        return {"type": "number"}
    kind = _SIMPLE.get(hint)
    return {"type": kind} if kind else {}


def dataclass_schema(cls: type, refs: dict[type, str] | None = None, closed: bool = True) -> dict[str, Any]:
    """An object schema with every field of `cls` required (but those whose metadata says `optional`), typed
    from its annotations, described by its `doc` metadata where there is one; `closed`: no other properties."""
    refs = refs or {}
    hints = typing.get_type_hints(cls)
    props = {}
    optional = {f.name for f in dataclasses.fields(cls) if f.metadata.get("optional")}
    for f in dataclasses.fields(cls):
        prop = _type_schema(hints[f.name], refs)
        if f.metadata.get("doc"):
            prop["description"] = f.metadata["doc"]
        props[f.name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": props,
                              "required": [name for name in props if name not in optional]}
    if closed:
        schema["additionalProperties"] = False
    return schema


def _document(kind: str, version: int, title: str, body: dict[str, Any],
              defs: dict[str, Any] | None = None) -> dict[str, Any]:
    body = dict(body)
    body["properties"] = {**body["properties"], "command": {"const": kind}, "schema_version": {"const": version}}
    body["required"] = list(dict.fromkeys([*body["required"], "command", "schema_version"]))
    return {"$schema": DRAFT, "$id": f"https://fitbench.invalid/schemas/{kind}.schema.json", "title": title,
            **body, **({"$defs": defs} if defs else {})}


def build(kind: str) -> dict[str, Any]:
    """The schema of one document kind, from the code that writes it."""
    if kind == "run":
        from fitbench.measure.record import SCHEMA_VERSION, PeakRecord, RunDocument, RunRecord

        refs = {RunRecord: "record", PeakRecord: "peak"}
        return _document("run", SCHEMA_VERSION, "fitbench run --json", dataclass_schema(RunDocument, refs),
                         {"record": dataclass_schema(RunRecord), "peak": dataclass_schema(PeakRecord)})
    if kind == "determinism":
        from fitbench.determinism.check import SCHEMA_VERSION, DeterminismDocument
        from fitbench.determinism.compare import PairResult
        from fitbench.determinism.settings import DeterminismSettings

        settings = dataclass_schema(DeterminismSettings, closed=False)
        run = {"type": "object", "required": ["run", "backend", "device", "versions", "op_determinism", "threads",
                                              "apis"],
               "properties": {"apis": {"type": "object", "additionalProperties": {
                   "type": "object", "required": ["jit_requested", "jit_effective", "variable_device", "epochs",
                                                  "cosine_to_target"]}}}}
        body = dataclass_schema(DeterminismDocument, {PairResult: "pair"})
        body["properties"]["settings"] = {"$ref": "#/$defs/settings",
                                          "description": body["properties"]["settings"]["description"]}
        body["properties"]["runs"] = {"type": "array", "minItems": 2, "items": {"$ref": "#/$defs/run"},
                                      "description": body["properties"]["runs"]["description"]}
        return _document("determinism", SCHEMA_VERSION, "fitbench determinism --json", body,
                         {"settings": settings, "run": run, "pair": dataclass_schema(PairResult)})
    if kind == "replay":
        from fitbench.determinism.replay import SCHEMA_VERSION, ReplayDocument, ReplayOutcome, ReplayRun

        refs = {ReplayRun: "run", ReplayOutcome: "outcome"}
        return _document("replay", SCHEMA_VERSION, "fitbench replay --json", dataclass_schema(ReplayDocument, refs),
                         {"run": dataclass_schema(ReplayRun), "outcome": dataclass_schema(ReplayOutcome)})
    if kind == "alert":
        from fitbench.regress.alertdoc import SCHEMA_VERSION, VERDICTS, AlertDocument, Comparison, StageRecord
        from fitbench.regress.decide import DecisionSettings
        from fitbench.regress.localize import Localization, PhaseChange

        refs = {DecisionSettings: "settings", StageRecord: "stage", Comparison: "comparison",
                Localization: "localization"}
        body = dataclass_schema(AlertDocument, refs)
        props = body["properties"]
        props["processes"]["anyOf"][0]["minimum"] = 2
        props["processes_planned"]["items"]["minimum"] = 2
        props["stages_planned"]["enum"] = [1, 2]
        props["exit_status"]["enum"] = sorted(VERDICTS)
        props["verdict"]["enum"] = [VERDICTS[k] for k in sorted(VERDICTS)]
        comparison = dataclass_schema(Comparison)
        comparison["properties"]["change"] = {"enum": ["worse", "better", "equivalent", "inconclusive", "failed",
                                                       "skipped"]}
        return _document("alert", SCHEMA_VERSION, "fitbench alert: alert.json", body,
                         {"settings": dataclass_schema(DecisionSettings), "comparison": comparison,
                          "stage": dataclass_schema(StageRecord),
                          "localization": dataclass_schema(Localization, {PhaseChange: "phase_change"}),
                          "phase_change": dataclass_schema(PhaseChange)})
    if kind == "explain":
        from fitbench.determinism.explain import SCHEMA_VERSION, ExplainDocument
        from fitbench.determinism.trace import PHASES

        int_or_null, num_or_null = {"type": ["integer", "null"]}, {"type": ["number", "null"]}
        divergence = {"type": "object", "required": ["phase", "name_a", "name_b", "max_ulp", "max_abs_diff"],
                      "properties": {"phase": {"enum": list(PHASES)}, "max_ulp": int_or_null,
                                     "max_abs_diff": num_or_null, "differing": int_or_null, "size": int_or_null}}
        phase_row = {"type": "object", "required": ["phase", "entries", "differing", "first_differing"],
                     "properties": {"phase": {"enum": list(PHASES)}, "entries": {"type": "integer"},
                                    "differing": {"type": "integer"}}}
        body = dataclass_schema(ExplainDocument)
        props = body["properties"]
        props["streams"].update(minItems=2, maxItems=2)
        props["first_divergence"] = {"oneOf": [{"type": "null"}, {"$ref": "#/$defs/divergence"}],
                                     "description": props["first_divergence"]["description"]}
        props["phases"] = {"type": "array", "items": {"$ref": "#/$defs/phase"}}
        return _document("explain", SCHEMA_VERSION, "fitbench explain --json", body,
                         {"divergence": divergence, "phase": phase_row})
    if kind == "versions":
        from fitbench.versions.compare import (
            SCHEMA_VERSION,
            CellRow,
            ColumnResult,
            Comparison,
            VersionsDocument,
            VersionsSettings,
        )
        from fitbench.versions.envs import VersionEnv

        refs = {VersionsSettings: "settings", ColumnResult: "column", CellRow: "cell", Comparison: "comparison"}
        column = dataclass_schema(ColumnResult)
        column["properties"]["env"] = {"$ref": "#/$defs/env"}
        body = dataclass_schema(VersionsDocument, refs)
        body["properties"]["columns"]["minItems"] = 2
        return _document("versions", SCHEMA_VERSION, "fitbench versions --json", body,
                         {"settings": dataclass_schema(VersionsSettings), "env": dataclass_schema(VersionEnv),
                          "column": column, "cell": dataclass_schema(CellRow, {Comparison: "comparison"}),
                          "comparison": dataclass_schema(Comparison)})
    if kind == "gate":
        from fitbench.regress.decide import DecisionSettings
        from fitbench.regress.gate import SCHEMA_VERSION, GateDocument, GateRow

        refs = {DecisionSettings: "settings", GateRow: "row"}
        return _document("gate", SCHEMA_VERSION, "fitbench gate --json", dataclass_schema(GateDocument, refs),
                         {"settings": dataclass_schema(DecisionSettings), "row": dataclass_schema(GateRow)})
    if kind == "bisect":
        from fitbench.regress.bisect import SCHEMA_VERSION, BisectDocument, BisectStep, CellEvidence
        from fitbench.regress.localize import Localization, PhaseChange

        refs = {BisectStep: "step", CellEvidence: "cell", Localization: "localization"}
        body = dataclass_schema(BisectDocument, refs)
        return _document("bisect", SCHEMA_VERSION, "fitbench bisect: bisect.json", body,
                         {"step": dataclass_schema(BisectStep, refs), "cell": dataclass_schema(CellEvidence),
                          "localization": dataclass_schema(Localization, {PhaseChange: "phase_change"}),
                          "phase_change": dataclass_schema(PhaseChange)})
    if kind == "history":
        from fitbench.regress.history import SCHEMA_VERSION, CellHistory, ChangePoint, Drift, HistoryDocument

        refs = {CellHistory: "cell", ChangePoint: "change_point", Drift: "drift"}
        return _document("history", SCHEMA_VERSION, "fitbench history: history.json",
                         dataclass_schema(HistoryDocument, refs),
                         {"cell": dataclass_schema(CellHistory, refs), "change_point": dataclass_schema(ChangePoint),
                          "drift": dataclass_schema(Drift)})
    if kind == "cost":
        from fitbench.determinism.cost import SCHEMA_VERSION, CostCell, CostDocument, CostSettings
        from fitbench.regress.decide import SpeedComparison

        refs = {CostSettings: "settings", CostCell: "cell", SpeedComparison: "comparison"}
        return _document("cost", SCHEMA_VERSION, "fitbench cost --json", dataclass_schema(CostDocument, refs),
                         {"settings": dataclass_schema(CostSettings), "cell": dataclass_schema(CostCell, refs),
                          "comparison": dataclass_schema(SpeedComparison)})
    if kind == "coverage":
        from fitbench.determinism.coverage import (
            SCHEMA_VERSION,
            STATUSES,
            CoverageDocument,
            CoverageRow,
            LayerCoverage,
        )

        refs = {CoverageRow: "row", LayerCoverage: "layer"}
        layer = dataclass_schema(LayerCoverage)
        layer["properties"]["status"]["enum"] = list(STATUSES)
        return _document("coverage", SCHEMA_VERSION, "fitbench coverage --json",
                         dataclass_schema(CoverageDocument, refs),
                         {"row": dataclass_schema(CoverageRow, refs), "layer": layer})
    if kind == "calibrate":
        from fitbench.regress.calibration import SCHEMA_VERSION, Calibration, CellNoise

        return _document("calibrate", SCHEMA_VERSION, "fitbench calibrate --json",
                         dataclass_schema(Calibration, {CellNoise: "cell"}), {"cell": dataclass_schema(CellNoise)})
    if kind == "breakdown":
        from fitbench.measure.breakdown import SCHEMA_VERSION, BreakdownCell, BreakdownDocument, Phase

        refs = {BreakdownCell: "cell", Phase: "phase"}
        return _document("breakdown", SCHEMA_VERSION, "fitbench breakdown --json",
                         dataclass_schema(BreakdownDocument, refs),
                         {"cell": dataclass_schema(BreakdownCell, refs), "phase": dataclass_schema(Phase)})
    raise ValueError(f"no schema for {kind!r}; fitbench has {', '.join(KINDS)}")


def shipped(kind: str) -> dict[str, Any]:
    """The schema file installed with the package."""
    text = resources.files("fitbench").joinpath(f"schemas/{kind}.schema.json").read_text()
    return json.loads(text)


def validate(doc: dict[str, Any]) -> None:
    """jsonschema.ValidationError unless `doc` matches the shipped schema of its `command` (needs jsonschema)."""
    import jsonschema

    kind = {"seed": "replay"}.get(doc.get("command", ""), doc.get("command", ""))
    jsonschema.validate(doc, shipped(kind))


def write(directory: Path) -> list[Path]:
    paths = []
    for kind in KINDS:
        path = directory / f"{kind}.schema.json"
        path.write_text(json.dumps(build(kind), indent=2, ensure_ascii=False) + "\n")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write(Path(__file__).parent / "schemas"):
        print(p)
    sys.exit(0)

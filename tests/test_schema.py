"""The documents' contract: shipped JSON Schemas built from the code, real documents validated against them."""

from __future__ import annotations

import copy
import json
from dataclasses import fields
from pathlib import Path

import jsonschema
import pytest

from conftest import SMALL, load, run_cli
from fitbench import schema
from fitbench.measure.record import PeakRecord, RunDocument, RunRecord, field_table

ROOT = Path(__file__).resolve().parents[1]
ALERT_RUNS = sorted((ROOT / "docs" / "results" / "alert-runs-2026-11-30").glob("a*.json"))


@pytest.mark.parametrize("kind", schema.KINDS)
def test_the_shipped_schema_is_the_one_the_code_builds(kind):
    # `python -m fitbench.schema` rewrites them; a field added to a record without that fails here
    assert schema.shipped(kind) == schema.build(kind)
    jsonschema.Draft202012Validator.check_schema(schema.shipped(kind))


def test_the_reference_lists_every_record_field_as_the_dataclasses_describe_them():
    reference = (ROOT / "docs" / "reference.md").read_text()
    for kind in (RunDocument, RunRecord, PeakRecord):
        assert field_table(kind) in reference, f"docs/reference.md's {kind.__name__} table is stale: " \
                                               "python -m fitbench.measure.record"


def test_real_alert_documents_validate_and_a_broken_one_does_not():
    assert len(ALERT_RUNS) >= 20  # the A/A and A/B alerts of docs/alerts.md, as fitbench alert wrote them
    for path in ALERT_RUNS:
        schema.validate(load(path))
    doc = load(ALERT_RUNS[0])
    broken = copy.deepcopy(doc)
    del broken["comparisons"][0]["ratio"]
    with pytest.raises(jsonschema.ValidationError, match="ratio"):
        schema.validate(broken)
    wrong_version = {**doc, "schema_version": 1}
    with pytest.raises(jsonschema.ValidationError):
        schema.validate(wrong_version)


def test_every_record_field_is_required_and_typed():
    run = schema.build("run")
    record = run["$defs"]["record"]
    assert record["required"] == [f.name for f in fields(RunRecord)]
    assert record["additionalProperties"] is False
    assert record["properties"]["samples_per_s"] == {
        "anyOf": [{"type": "number"}, {"type": "null"}], "description": "batch_size ÷ step_time_median_s"}


@pytest.mark.processes
def test_a_real_run_and_determinism_document_validate(tmp_path):
    run_json, det_json = tmp_path / "run.json", tmp_path / "det.json"
    result = run_cli("run", *SMALL, "--api", "functional", "--batch-sizes", "4", "--jit", "off", "--variant", "plain",
                     "--device", "both", "--json", str(run_json))
    assert result.returncode == 0, result.stderr
    doc = load(run_json)
    schema.validate(doc)
    assert {r["status"] for r in doc["records"]} == {"ok", "skipped"}  # the cpu cells ran, the gpu ones skipped
    result = run_cli("determinism", *SMALL, "--epochs", "1", "--api", "sequential,functional", "--json", str(det_json))
    assert result.returncode == 0, result.stderr
    schema.validate(load(det_json))
    bad = json.loads(det_json.read_text())
    bad["pairs"][0]["max_ulp"] = "zero"
    with pytest.raises(jsonschema.ValidationError):
        schema.validate(bad)

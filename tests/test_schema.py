"""The documents' contract: shipped JSON Schemas built from the code, real documents validated against them
(the stored alert runs here; a real run's and determinism check's where tests/test_cli.py makes them)."""

from __future__ import annotations

import copy
import json
from dataclasses import fields
from pathlib import Path

import jsonschema
import pytest

from conftest import load
from fitbench import schema
from fitbench.measure.record import PeakRecord, RunDocument, RunRecord, field_table

ROOT = Path(__file__).resolve().parents[1]
# the paired alert's counted runs: loaded (12-03), quiet before and after the warm-up after a switch (12-04),
# one on the AMD VM of the next session, the alerts that say where a planted regression grew, a planted retrace
ALERT_FOLDERS = ("alert-runs-2026-12-03", "alert-runs-2026-12-04", "alert-runs-2026-12-04-warm",
                 "alert-runs-2026-12-04-amd", "where-it-grew-2026-12-04", "where-it-grew-2026-12-04-seen",
                 "retrace-alert-2026-12-04", "alert-runs-2026-12-05-amd-loaded",
                 "alert-runs-2026-12-05-amd-heap-loaded", "alert-runs-2026-12-05-amd-heap-quiet")
ALERT_RUNS = sorted(p for folder in ALERT_FOLDERS
                    for p in (ROOT / "docs" / "results" / folder).glob("a*.json"))


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
    assert len(ALERT_RUNS) >= 6  # the A/A and A/B alerts of docs/alerts.md, as fitbench alert wrote them
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


def test_a_replay_document_validates_and_says_which_run_answered_each_mode():
    from fitbench.determinism import replay

    def run(keras: str, shared: bool, **kw) -> replay.ReplayRun:
        return replay.ReplayRun(keras=keras, optimizer_shared=shared, status=kw.pop("status", "ok"), **kw)

    runs = [run(replay.KERAS3, True, status="error", error="ValueError: Unknown variable"),
            run(replay.KERAS3, False, cosine_functional=0.4, cosine_sequential=0.4, identical=True),
            run(replay.LEGACY, True, cosine_functional=0.65, cosine_sequential=0.2, identical=False),
            run(replay.LEGACY, False, cosine_functional=0.4, cosine_sequential=0.4, identical=True)]
    doc = replay.summarise(runs, 3, legacy_missing=False)
    schema.validate(json.loads(json.dumps(doc.to_dict())))
    assert (doc.shared.keras, doc.shared.identical, doc.fresh.keras) == (replay.LEGACY, False, replay.KERAS3)
    assert doc.keras3_shared_outcome == "ValueError: Unknown variable" and doc.succeeded
    # without tf-keras: Keras 3's shared run answers for `shared`; a failed fresh run is a failed replay
    doc = replay.summarise([runs[0], run(replay.KERAS3, False, status="error", error="boom")], 3, legacy_missing=True)
    schema.validate(json.loads(json.dumps(doc.to_dict())))
    assert doc.shared.keras == replay.KERAS3 and doc.legacy_fresh is None and doc.legacy_note
    assert not doc.succeeded


def test_every_record_field_is_required_and_typed():
    run = schema.build("run")
    record = run["$defs"]["record"]
    assert record["required"] == [f.name for f in fields(RunRecord)]
    assert record["additionalProperties"] is False
    assert record["properties"]["samples_per_s"] == {
        "anyOf": [{"type": "number"}, {"type": "null"}], "description": "batch_size ÷ step_time_median_s"}


def test_a_calibration_document_is_typed_and_validates_and_an_older_one_still_loads():
    from fitbench.regress.calibration import Calibration, CellNoise

    cell = CellNoise(key="bench_fit.StepTime.time_step(32) [tensorflow]", benchmark="bench_fit.StepTime.time_step",
                     params={"batch_size": "32"}, backend="tensorflow", unit="seconds", values=[1.0, 1.1, 0.9],
                     median=1.0, log_sd=0.05, sd_log=0.1)
    doc = Calibration(machine="vm", commit="a" * 40, created="2026-12-03T00:00:00Z", processes=3, threads="1",
                      cells=[cell]).to_dict()
    schema.validate(doc)
    assert doc["command"] == "calibrate"
    older = {k: v for k, v in doc.items() if k != "command"}  # stored before the document was typed
    assert Calibration.from_dict(older).cells[0].log_sd == 0.05
    broken = copy.deepcopy(doc)
    del broken["cells"][0]["values"]
    with pytest.raises(jsonschema.ValidationError, match="values"):
        schema.validate(broken)


def test_stored_breakdown_documents_validate_including_those_from_before_its_optional_fields():
    stored = [doc for path in sorted((ROOT / "docs" / "results").glob("**/*.json"))
              if isinstance(doc := json.loads(path.read_text()), dict) and doc.get("command") == "breakdown"]
    assert len(stored) >= 3  # docs/results.md's breakdowns (2026-12-03): without subnormals_flushed
    for doc in stored:
        schema.validate(doc)
    broken = copy.deepcopy(stored[0])
    broken["cells"][0]["freed_memory_kept"] = "yes"
    with pytest.raises(jsonschema.ValidationError):
        schema.validate(broken)

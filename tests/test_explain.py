"""`fitbench explain`: the step, layer and phase where two trainings part.

Fast tier: the locating logic on synthetic fingerprints and arrays, and bad input. Processes tier: the
cases the command exists for, each in fresh processes on the backends — a noise source planted in one
layer's forward pass or in the gradient it passes back (tests/planted_models.py, unseeded, from step 2 on),
a one-ULP nudge, the seed question's shared legacy optimizer, and two identical runs (exit 0).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from fitbench import schema
from fitbench.determinism.explain import ExplainSettings, entry_numbers, locate
from fitbench.determinism.trace import comparable, fingerprint
from fitbench.errors import UsageError
from fitbench.models.choice import ModelChoice

TESTS = Path(__file__).resolve().parent
PLANTED = {"PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}


def _step(values: list[tuple[str, str, np.ndarray]]) -> tuple[list[list], list[np.ndarray]]:
    return [fingerprint(e) for e in values], [v for _, _, v in values]


def test_locate_finds_the_first_differing_entry_in_execution_order_and_ignores_names():
    x = np.arange(4, dtype=np.float32)
    w = np.ones((2, 2), np.float32)
    moved = w.copy()
    moved[0, 0] = np.nextafter(np.float32(1), np.float32(2))
    a = [("data", "x[0]", x), ("forward", "0:dense", x * 2), ("forward", "1:dense_1", x * 3), ("loss", "loss", x[:1]),
         ("gradient", "0:seq/dense/kernel", w)]
    b = [("data", "x[0]", x), ("forward", "0:dense_4", x * 2), ("forward", "1:dense_5", x * 3 + 1),
         ("loss", "loss", x[:1] + 1), ("gradient", "0:fun/dense_4/kernel", moved)]
    (fa, arr_a), (fb, arr_b) = _step(a), _step(b)
    assert comparable(fa[:2]) == comparable(fb[:2])  # other names, same values: the same
    found = locate(fa, fb, arr_a, arr_b)
    first = found["first_divergence"]
    assert (first["phase"], first["name_a"], first["name_b"]) == ("forward", "1:dense_1", "1:dense_5")
    assert first["differing"] == 4 and first["size"] == 4 and first["max_abs_diff"] == 1.0
    assert found["identical_before"] == [{"phase": "data", "entries": 1}, {"phase": "forward", "entries": 1}]
    by_phase = {r["phase"]: r for r in found["phases"]}
    assert by_phase["data"]["differing"] == 0 and by_phase["forward"]["differing"] == 1
    assert by_phase["gradient"]["max_ulp"] == 1  # one ULP apart, counted in float32 units


def test_entry_numbers_count_ulps_and_handle_absent_entries():
    a = np.array([1.0, -0.0], np.float32)
    b = np.array([np.nextafter(np.float32(1), np.float32(0)), 0.0], np.float32)
    assert entry_numbers(a, b) == {"max_ulp": 1, "max_abs_diff": pytest.approx(5.96e-8, rel=1e-2), "differing": 1,
                                   "size": 2}
    assert entry_numbers(None, a)["max_ulp"] is None
    assert fingerprint(("optimizer state", "m", None))[2] == "absent"


@pytest.mark.parametrize("settings, message", [
    (ExplainSettings(pair="apis", apis=("functional",)), "--pair apis needs 2 apis"),
    (ExplainSettings(pair="replay", apis=("sequential",), backend="jax"), "--pair replay is the seed question's"),
    (ExplainSettings(pair="runs", apis=("sequential",), model=ModelChoice(source="attention")), "has no sequential"),
    (ExplainSettings(pair="sideways"), "unknown pair 'sideways'"),
    (ExplainSettings(epochs=0), "epochs must be a positive integer"),
])
def test_bad_settings_are_one_usage_line(settings, message):
    with pytest.raises(UsageError, match=message):
        settings.check()


def test_each_pair_is_two_streams_that_differ_only_in_what_it_names():
    seed = ModelChoice()
    runs = ExplainSettings(pair="runs", apis=("functional",), model=seed).streams()
    assert runs[0].to_dict() | {"name": ""} == runs[1].to_dict() | {"name": ""}
    nudge = ExplainSettings(pair="nudge", apis=("functional",), model=seed).streams()
    assert (nudge[0].nudge, nudge[1].nudge) == (False, True)
    switch = ExplainSettings(pair="switch", apis=("functional",), model=seed, op_determinism=True).streams()
    assert (switch[0].op_determinism, switch[1].op_determinism) == (True, False)
    apis = ExplainSettings(pair="apis", apis=("sequential", "subclassed"), model=seed).streams()
    assert (apis[0].api, apis[1].api) == ("sequential", "subclassed")
    replay = ExplainSettings(pair="replay", apis=("sequential",), model=seed).streams()
    assert (replay[0].legacy_shared, replay[1].legacy_shared) == (False, True)


def test_bad_input_on_the_command_line_is_exit_2_and_one_line(tmp_path):
    result = run_cli("explain", "--pair", "apis", "--api", "functional")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "needs 2 apis" in result.stderr


def _explain(tmp_path: Path, *args: str) -> tuple[int, dict, str]:
    out = tmp_path / "explain.json"
    result = run_cli("explain", *args, "--json", str(out), env=PLANTED)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    doc = json.loads(out.read_text())
    schema.validate(doc)
    return result.returncode, doc, result.stdout


FORWARD = ("forward_noise", "forward", "1:forward_noise")
GRADIENT = ("gradient_noise", "gradient", "0:sequential/dense/kernel")  # the gradient it passes back, first in order


# each backend's trace, the gradient phase on two backends (CI's time: every case is two training processes; the
# third forward case became coverage's real test below, which also traces PyTorch's layers)
@pytest.mark.processes
@pytest.mark.parametrize("backend, planted, phase, where", [
    ("tensorflow", *FORWARD), ("jax", *GRADIENT), ("torch", *GRADIENT)])
def test_a_planted_noise_source_is_found_at_its_step_layer_and_phase(tmp_path, backend, planted, phase, where):
    status, doc, text = _explain(tmp_path, "--model", f"planted_models:{planted}", "--pair", "runs",
                                 "--samples", "8", "--batch-size", "4", "--epochs", "2", "--backend", backend)
    assert status == 1 and not doc["identical"]
    first = doc["first_divergence"]
    assert doc["first_divergent_step"] == 2 and (doc["epoch"], doc["batch"]) == (2, 1)  # from step 2 on
    assert (first["phase"], first["name_a"]) == (phase, where) and first["max_ulp"] > 0
    assert doc["reproduced"] is True  # the first stream repeats itself to that step
    before = {r["phase"] for r in doc["identical_before"]}
    assert {"data"} <= before and (phase != "gradient" or {"forward", "loss"} <= before)
    assert f"phase '{phase}'" in text and where in text


# The noise tests above run every backend's stepper; the nudge and identical cases add the pair logic, one
# backend each (CI's time).
@pytest.mark.processes
@pytest.mark.parametrize("backend", ["torch"])
def test_a_one_ulp_nudge_is_step_0_that_layer_initial_weights(tmp_path, backend):
    status, doc, text = _explain(tmp_path, "--pair", "nudge", "--api", "functional", "--widths", "16,16",
                                 "--epochs", "1", "--backend", backend)
    first = doc["first_divergence"]
    assert status == 1 and doc["first_divergent_step"] == 0
    assert (first["phase"], first["max_ulp"], first["differing"]) == ("initial weights", 1, 1)
    assert first["name_a"].startswith("0:") and first["name_a"].endswith("dense/kernel")  # the first kernel


@pytest.mark.processes
def test_the_seed_questions_shared_optimizer_parts_at_the_optimizer_state_of_the_first_step(tmp_path):
    status, doc, text = _explain(tmp_path, "--pair", "replay", "--epochs", "2")
    first = doc["first_divergence"]
    assert status == 1 and doc["first_divergent_step"] == 0
    # same initial weights, data, forward pass, loss and gradients; then the optimizer's state: its step counter
    # came from the Functional model's training, so the bias correction — and every update — differ
    assert [r["phase"] for r in doc["identical_before"]] == ["initial weights", "data", "forward", "loss", "gradient"]
    assert (first["phase"], first["name_a"], first["max_abs_diff"]) == ("optimizer state", "iterations", 2.0)
    by_phase = {r["phase"]: r for r in doc["phases"]}
    assert by_phase["update"]["differing"] == by_phase["update"]["entries"] > 0


@pytest.mark.processes
@pytest.mark.parametrize("backend", ["jax"])
def test_two_identical_runs_have_nothing_to_explain(tmp_path, backend):
    status, doc, text = _explain(tmp_path, "--pair", "runs", "--api", "sequential", "--widths", "16,16",
                                 "--epochs", "2", "--backend", backend)
    assert status == 0 and doc["identical"] and doc["first_divergence"] is None and doc["steps_a"] == 2
    assert "nothing to explain" in text


@pytest.mark.processes
def test_coverage_tells_a_covered_layer_from_one_the_switch_cannot_fix_and_one_it_refuses(tmp_path):
    """`fitbench coverage` on PyTorch, two fresh processes with torch.use_deterministic_algorithms(True): the Dense
    layers identical, the layer with unseeded noise differs between the processes, the layer calling `put_` raises
    with PyTorch's own message, and the whole compiled step is refused too; exit 1 (found)."""
    out = tmp_path / "coverage.json"
    result = run_cli("coverage", "--model", "planted_models:switch_coverage", "--backend", "torch", "--json",
                     str(out), env=PLANTED)
    assert result.returncode == 1, result.stdout + result.stderr
    doc = json.loads(out.read_text())
    schema.validate(doc)
    (row,) = doc["rows"]
    assert row["switch"] == "deterministic-algorithms" and row["switch_in_force"] is True
    status = {layer["name"]: layer["status"] for layer in row["layers"]}
    assert status == {"dense": "identical", "noise": "differs", "dense_1": "identical", "refused": "raises"}
    refused = next(layer for layer in row["layers"] if layer["name"] == "refused")
    assert refused["detail"].startswith("forward: RuntimeError: put_ does not have a deterministic implementation")
    assert row["compiled_runs"] is False and row["compiled_error"].startswith("RuntimeError: put_ does not have")
    assert "differs" in result.stdout and "put_ does" in result.stdout

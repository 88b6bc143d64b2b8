"""The pure half of the determinism checker: hashing, ULP distance and trajectory comparison."""

import numpy as np
import pytest

from fitbench.determinism.compare import (
    compare_trajectories,
    jit_note,
    nudge_one_ulp,
    pairs_to_compare,
    sha256_arrays,
    ulp_distance,
)


def test_ulp_distance_counts_representable_floats_between():
    one = np.float32(1.0)
    assert ulp_distance(np.array([one]), np.array([np.nextafter(one, np.float32(2))]))[0] == 1
    assert ulp_distance(np.array([np.float32(0.0)]), np.array([np.float32(-0.0)]))[0] == 0
    tiny = np.nextafter(np.float32(0), np.float32(1))
    assert ulp_distance(np.array([-tiny]), np.array([tiny]))[0] == 2  # across zero
    assert ulp_distance(np.array([np.float32(1.5)]), np.array([np.float32(1.5)]))[0] == 0


def test_sha256_sees_a_one_ulp_change_and_shapes():
    w = [np.ones((3, 2), np.float32), np.zeros(2, np.float32)]
    assert sha256_arrays(w) == sha256_arrays([a.copy() for a in w])
    assert sha256_arrays(w) != sha256_arrays(nudge_one_ulp(w))
    assert sha256_arrays([np.ones(6, np.float32)]) != sha256_arrays([np.ones((2, 3), np.float32)])


def _trajectory(weights_per_epoch, predictions_per_epoch, cosine=0.5):
    return {
        "epochs": [{"epoch": i, "weights_sha256": sha256_arrays(w), "predictions_sha256": sha256_arrays([p]),
                    "predictions": p.tolist()}
                   for i, (w, p) in enumerate(zip(weights_per_epoch, predictions_per_epoch))],
        "initial_weights": weights_per_epoch[0], "final_weights": weights_per_epoch[-1],
        "cosine_to_target": cosine, "jit_effective": False,
    }


def test_identical_trajectories_are_reported_identical():
    w = [[np.full(4, i, np.float32)] for i in range(3)]
    p = [np.full(2, i / 10, np.float32) for i in range(3)]
    pair = compare_trajectories("a", _trajectory(w, p), "b", _trajectory(w, p), "api")
    assert pair.identical and pair.first_divergent_epoch is None and pair.max_ulp == 0
    assert pair.identical_per_epoch == [True, True, True] and pair.identical_initial_weights


def test_one_ulp_in_the_initial_weights_is_found_at_epoch_zero():
    w = [[np.full(4, i + 1, np.float32)] for i in range(3)]
    p = [np.full(2, i / 10, np.float32) for i in range(3)]
    nudged = [nudge_one_ulp(w[0])] + w[1:]
    pair = compare_trajectories("a", _trajectory(w, p), "b", _trajectory(nudged, p), "api")
    assert not pair.identical and pair.first_divergent_epoch == 0 and not pair.identical_initial_weights
    assert pair.max_ulp_weights == 1 and pair.max_ulp == 1


def test_divergence_in_a_later_epoch_reports_that_epoch_and_the_prediction_gap():
    w = [[np.full(4, i + 1, np.float32)] for i in range(3)]
    p = [np.full(2, 0.25, np.float32) for _ in range(3)]
    q = [p[0], p[1], np.array([0.25, 0.5], np.float32)]
    pair = compare_trajectories("a", _trajectory(w, p), "b", _trajectory(w, q), "run_to_run")
    assert pair.first_divergent_epoch == 2 and pair.identical_per_epoch == [True, True, False]
    assert pair.max_abs_diff_predictions == pytest.approx(0.25)
    assert pair.max_ulp_predictions == ulp_distance(np.float32([0.25]), np.float32([0.5]))[0]


def test_pairs_cover_every_api_pair_and_every_api_across_runs():
    pairs = pairs_to_compare(["sequential", "functional", "subclassed"], ["run1", "run2"])
    api_pairs = {(a[1], b[1]) for a, b, scope in pairs if scope == "api"}
    assert api_pairs == {("sequential", "functional"), ("sequential", "subclassed"), ("functional", "subclassed")}
    assert {(a, b) for a, b, scope in pairs if scope == "run_to_run"} == {
        (("run1", api), ("run2", api)) for api in ("sequential", "functional", "subclassed")}


def test_jit_note_flags_results_that_ran_without_the_requested_xla():
    assert "jit off" in jit_note(True, [False], op_determinism=True)
    assert jit_note(True, [True], op_determinism=False) is None
    assert jit_note(False, [False], op_determinism=True) is None


def test_the_explain_line_says_when_explain_would_not_train_as_the_check_did():
    # explain trains on the CPU with jit off: a run-to-run divergence seen on an H200 with jit on (JAX without
    # the switch, 2026-12-04) may not show there; the command stays one line to paste, the caveat comes apart
    import argparse

    from fitbench.commands.determinism import explain_caveat, explain_command
    from fitbench.determinism.settings import DeterminismSettings

    args = argparse.Namespace(model="seed", widths=None, seed=0, samples=256, loss=None, optimizer=None, data=None,
                              no_op_determinism=True)
    pair = {"a": "functional@run1", "b": "functional@run2", "scope": "run_to_run", "first_divergent_epoch": 0}
    gpu = DeterminismSettings(backend="jax", device="gpu", jit=True, samples=256, batch_size=64)
    assert explain_command(args, gpu, pair) == ("fitbench explain --pair runs --api functional --backend jax "
                                                "--epochs 1 --samples 256 --batch-size 64 --no-op-determinism")
    assert explain_caveat(gpu) == ("explain trains on the CPU and with jit off, unlike this check: the divergence "
                                   "may not show there")
    assert explain_caveat(DeterminismSettings(backend="jax", jit=True)).startswith("explain trains with jit off,")
    assert explain_caveat(DeterminismSettings(backend="jax", samples=256, batch_size=64)) is None

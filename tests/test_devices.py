"""Beyond one device: the devices axis (keras.distribution.DataParallel, simulated CPU devices) in plans, records,
tables and bad input; and, in real processes, determinism at N against N, N against 1 and two local hosts
(jax.distributed over gloo) against one process."""

from __future__ import annotations

import json

import pytest

from conftest import cli_exit, run_cli
from fitbench import schema
from fitbench.errors import UsageError
from fitbench.measure.cells import plan_cells
from fitbench.measure.distributed import check_device_counts, device_env, host_rows, parse_device_counts
from fitbench.report import tables


def test_device_counts_parse_and_every_cell_gets_each_count():
    assert parse_device_counts("1,2,4") == [1, 2, 4] and parse_device_counts(None) == [1]
    cells = plan_cells(["functional"], [True], ["cpu"], [32], ["jax"], include_seed=True, device_counts=(1, 4))
    fit = [c for c in cells if c.kind == "fit"]
    assert [c.device_count for c in fit] == [1, 4] and "devices=4" in fit[1].label()
    assert all(c.device_count == 1 for c in cells if c.kind != "fit")  # the seed's one-sample epochs: one device


def test_simulated_devices_are_an_environment_variable_of_the_jax_child_only():
    assert device_env("jax", "cpu", 4) == {"JAX_NUM_CPU_DEVICES": "4"}
    assert device_env("jax", "cpu", 1) == {} and device_env("jax", "gpu", 4) == {}


@pytest.mark.parametrize("counts, stacks, batches, message", [
    ([1, 2], ["torch"], [32], "runs on jax only, not on torch"),
    ([2], ["tensorflow"], [32], "not on tensorflow"),
    ([2], ["tf-keras"], [32], "Keras 2 (tf-keras) does not have"),
    ([128], ["jax"], [256], "at most 64 simulated CPU devices"),
    ([1, 3], ["jax"], [32], "batch 32 does not split over 3 devices"),
])
def test_what_the_engine_cannot_do_is_one_line(counts, stacks, batches, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_device_counts(counts, stacks, batches)
    check_device_counts([1], stacks, batches)  # one device is always fine


@pytest.mark.parametrize("argv, message", [
    (["run", "--backend", "torch", "--devices", "1,2"], "not on torch"),
    (["run", "--backend", "jax", "--devices", "0"], "--devices takes device counts"),
    (["run", "--backend", "jax", "--devices", "2", "--batch-sizes", "3"], "batch 3 does not split"),
    (["determinism", "--backend", "tf-keras", "--devices", "2"], "tf-keras"),
    (["determinism", "--backend", "jax", "--hosts", "2"], "give --devices that count"),
    (["determinism", "--backend", "jax", "--devices", "1,2", "--hosts", "2", "--samples", "6", "--batch-size", "4"],
     "must be whole batches"),
])
def test_bad_devices_input_is_exit_2_before_any_process(argv, message, capsys, tmp_path):
    out = tmp_path / "out.json"
    assert cli_exit([*argv, "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_each_host_feeds_its_slice_of_every_global_batch():
    h0 = host_rows(16, 8, {"index": 0, "count": 2, "coordinator": "x"})
    h1 = host_rows(16, 8, {"index": 1, "count": 2, "coordinator": "x"})
    assert h0.tolist() == [0, 1, 2, 3, 8, 9, 10, 11] and h1.tolist() == [4, 5, 6, 7, 12, 13, 14, 15]


def _record(devices, batch, rate):
    return {"status": "ok", "backend": "jax", "kind": "fit", "api": "functional", "jit_requested": True,
            "jit_effective": True, "variant": "plain", "device": "cpu", "batch_size": batch,
            "device_count": devices, "samples_per_s": rate}


def test_scaling_is_strong_against_the_same_batch_and_weak_against_the_same_per_device_batch():
    records = [_record(1, 32, 1000.0), _record(1, 128, 2000.0), _record(4, 128, 3000.0), _record(4, 32, 500.0)]
    rows = {(s["devices"], s["batch_size"]): s for s in tables.device_scaling(records)}
    assert rows[4, 128]["strong_speedup"] == pytest.approx(1.5) and rows[4, 128]["strong_efficiency"] == 0.375
    assert rows[4, 128]["weak_efficiency"] == pytest.approx(3000 / (4 * 1000))  # 4 × batch 32 on one device
    assert rows[4, 32]["weak_efficiency"] is None and rows[4, 32]["per_device_batch"] == 8
    caption = str(tables.device_scaling_table(records).caption)
    assert "simulated CPU devices" in caption and "says nothing about real devices" in caption


@pytest.mark.processes
def test_determinism_across_device_counts_and_two_local_hosts(tmp_path):
    """JAX, simulated CPU devices: 2 devices twice are bit-identical; 2 devices against 1 is reported as a pair
    of its own (scope "devices"); two processes joined by jax.distributed over gloo, one device each, train
    exactly what one process with two devices trains (scope "hosts") — the code a cluster runs, here."""
    out = tmp_path / "det.json"
    result = run_cli("determinism", "--backend", "jax", "--devices", "1,2", "--hosts", "2", "--api", "functional",
                     "--samples", "16", "--batch-size", "8", "--epochs", "2", "--json", str(out))
    assert result.returncode in (0, 1), result.stdout + result.stderr
    doc = json.loads(out.read_text())
    schema.validate(doc)
    scopes = {}
    for p in doc["pairs"]:
        scopes.setdefault(p["scope"], []).append(p)
    assert {p["a"] for p in scopes["hosts"]} == {"functional@2dev-2hosts-host0", "functional@2dev-2hosts-host1"}
    assert all(p["identical"] for p in scopes["run_to_run"] + scopes["hosts"])
    (devices,) = scopes["devices"]
    assert (devices["a"], devices["b"]) == ("functional@2dev-run1", "functional@1dev-run1")
    assert result.returncode == (0 if devices["identical"] else 1) and doc["all_identical"] == devices["identical"]
    counts = sorted({r["device_count"] for r in doc["runs"]})
    assert counts == [1, 2] and sum(bool(r["host"]) for r in doc["runs"]) == 2


@pytest.mark.processes
def test_explain_says_where_one_device_and_two_part(tmp_path):
    """`fitbench explain --pair devices`: the same training on one device and split over two (JAX, simulated);
    when they part, it is located by step, layer and phase (on XLA's CPU: the first kernel's gradient, the
    reduction over the split batch), and the forward pass before it is identical."""
    out = tmp_path / "explain.json"
    result = run_cli("explain", "--pair", "devices", "--devices", "2", "--backend", "jax", "--api", "functional",
                     "--samples", "16", "--batch-size", "8", "--epochs", "1", "--json", str(out))
    assert result.returncode in (0, 1), result.stdout + result.stderr
    doc = json.loads(out.read_text())
    schema.validate(doc)
    assert doc["streams"] == ["functional on 1 device", "functional on 2 devices"]
    assert result.returncode == (0 if doc["identical"] else 1)
    if not doc["identical"]:
        before = {r["phase"] for r in doc["identical_before"]}
        assert {"initial weights", "data"} <= before and doc["first_divergence"]["phase"] in (
            "forward", "loss", "gradient", "optimizer state", "update")
        assert "they part at step" in result.stdout

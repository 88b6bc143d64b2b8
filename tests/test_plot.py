"""`fitbench run --plot`: samples/s against batch size, fit (plain, tuned) and the raw step."""

from __future__ import annotations

import pytest

from conftest import run_cli
from fitbench.report.plot import plot_throughput, throughput_series

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rec(batch: int, variant: str, sps: float, raw_s: float | None, jit: bool = True, api: str = "functional",
         backend: str = "tensorflow", status: str = "ok") -> dict:
    return dict(kind="fit", backend=backend, device="cpu", api=api, batch_size=batch, variant=variant,
                jit_effective=jit, samples_per_s=sps, raw_step_time_s=raw_s, status=status)


RECORDS = [_rec(1, "plain", 100.0, 0.005), _rec(32, "plain", 1000.0, 0.016), _rec(1, "tuned", 150.0, 0.004),
           _rec(32, "tuned", 1500.0, 0.02), _rec(32, "plain", 1200.0, 0.032, api="sequential"),
           _rec(1, "plain", 80.0, 0.01, jit=False, backend="jax"),
           _rec(64, "plain", 1.0, None, status="error"),
           dict(kind="seed_epoch", backend="tensorflow", device="cpu", api="functional", batch_size=1,
                variant="plain", jit_effective=True, samples_per_s=5.0, status="ok")]


def test_series_has_one_line_per_backend_device_jit_and_variant_plus_the_raw_step():
    series = throughput_series(RECORDS)
    assert sorted(series) == ["jax cpu jit=off plain", "jax cpu jit=off raw", "tensorflow cpu jit=on plain",
                              "tensorflow cpu jit=on raw", "tensorflow cpu jit=on tuned"]
    assert series["tensorflow cpu jit=on plain"] == [(1, 100.0), (32, 1200.0)]  # the fastest api per batch
    assert series["tensorflow cpu jit=on tuned"] == [(1, 150.0), (32, 1500.0)]
    # raw: batch / raw step time, from the plain cells (fastest of the apis' measurements)
    assert series["tensorflow cpu jit=on raw"] == [(1, pytest.approx(200.0)), (32, pytest.approx(2000.0))]
    assert series["jax cpu jit=off raw"] == [(1, pytest.approx(100.0))]


def test_plot_writes_a_png_and_nothing_else(tmp_path):
    out = tmp_path / "throughput.png"
    plot_throughput(RECORDS, str(out))
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["throughput.png"]  # no temporary file left behind


def test_plot_of_no_finished_cell_is_still_a_png(tmp_path):
    out = tmp_path / "empty.png"
    assert plot_throughput([_rec(64, "plain", 1.0, None, status="error")], str(out)) == {}
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_unwritable_plot_path_is_refused_before_any_work(tmp_path):
    result = run_cli("run", "--plot", str(tmp_path / "missing" / "p.png"))
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr

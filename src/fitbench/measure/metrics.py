"""The arithmetic of a record's derived figures, one definition for the CLI's records and the asv suite."""

from __future__ import annotations


def samples_per_s(batch_size: int, step_s: float) -> float:
    return batch_size / step_s


def gflops_per_s(flops: int, step_s: float) -> float:
    return flops / step_s / 1e9


def efficiency(raw_step_s: float, fit_step_s: float) -> float:
    """Raw step ÷ fit step: 1 = `fit` adds nothing to the framework's own step; above 1 = the fit loop beats
    the per-step raw loop (the tuned variant runs k steps per call without going back to the host)."""
    return raw_step_s / fit_step_s


def pct_of_peak(gflops: float, peak_gflops: float) -> float:
    return 100.0 * gflops / peak_gflops

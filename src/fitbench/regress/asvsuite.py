"""Moved to fitbench.asvsuite (it runs inside asv's benchmark processes, not on the parent side of regress/).
Kept so that the `benchmarks/` written by `fitbench asv-init` before 2026-11-30 still import."""

from fitbench.asvsuite import *  # noqa: F401,F403
from fitbench.asvsuite import DEFAULT_PROCESSES, PROCESSES, REPEAT, Determinism, FitLoop, StepTime  # noqa: F401

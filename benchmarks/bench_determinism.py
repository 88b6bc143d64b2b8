"""Determinism as a graph: a commit that breaks bit-identity shows as a step from 1 to 0."""

from __future__ import annotations

from typing import Any

from .common import SEED, Benchmark, determinism_document, require_backend


class Determinism(Benchmark):
    timeout = 900

    def setup_cache(self) -> dict[str, Any]:
        # Two fresh processes train Sequential and Functional on the full seed network; run once.
        require_backend()
        return determinism_document(["sequential", "functional"], epochs=3, seed=SEED)

    @staticmethod
    def _pair(doc: dict[str, Any], scope: str) -> list[dict[str, Any]]:
        return [p for p in doc["pairs"] if p["scope"] == scope]

    def track_sequential_functional_identical(self, doc: dict[str, Any]) -> int:
        """1 when Sequential and Functional (fresh optimizers, op determinism) train bit-identically."""
        return int(all(p["identical"] for p in self._pair(doc, "api")))

    track_sequential_functional_identical.unit = "identical (1/0)"

    def track_sequential_functional_max_ulp(self, doc: dict[str, Any]) -> int:
        """Largest float32 ULP distance between Sequential and Functional weights or predictions."""
        return max(p["max_ulp"] for p in self._pair(doc, "api"))

    track_sequential_functional_max_ulp.unit = "ULP"

    def track_run_to_run_identical(self, doc: dict[str, Any]) -> int:
        """1 when each API trained in two separate processes gives bit-identical results."""
        return int(all(p["identical"] for p in self._pair(doc, "run_to_run")))

    track_run_to_run_identical.unit = "identical (1/0)"

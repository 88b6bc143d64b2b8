"""The zoo's determinism on this machine: every zoo model × backend × jit off/on through `fitbench determinism`.

Usage: python scripts/zoo_determinism.py OUT.json  (then the markdown table on stdout, for docs/results.md)

Each line is one `fitbench determinism --model M --backend B --jit J --epochs 2 --samples 64 --batch-size 16`
(every API the model comes in, two processes, the backend's determinism switch on, as a user runs it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = ("conv", "text", "attention")
BACKENDS = ("tensorflow", "jax", "torch")


def one(model: str, backend: str, jit: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "det.json"
        command = ["fitbench", "determinism", "--model", model, "--backend", backend, "--jit", jit, "--epochs", "2",
                   "--samples", "64", "--batch-size", "16", "--json", str(out)]
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if not out.exists():
            return {"model": model, "backend": backend, "jit": jit, "exit": proc.returncode, "wall_s": wall,
                    "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
        doc = json.loads(out.read_text())
    pairs = doc["pairs"]
    api = [p for p in pairs if p["scope"] == "api"]
    r2r = [p for p in pairs if p["scope"] == "run_to_run"]
    return {"model": model, "backend": backend, "jit": jit, "exit": proc.returncode, "wall_s": wall,
            "command": " ".join(command[:-2]), "jit_effective": doc["jit_effective"], "jit_note": doc["jit_note"],
            "api_identical": all(p["identical"] for p in api) if api else None,
            "run_to_run_identical": all(p["identical"] for p in r2r),
            "max_ulp": max(p["max_ulp"] for p in pairs),
            "first_divergent_epoch": min((p["first_divergent_epoch"] for p in pairs
                                          if p["first_divergent_epoch"] is not None), default=None),
            "versions": doc["runs"][0]["versions"]}


def main(out_path: str) -> int:
    rows = [one(m, b, j) for m in MODELS for b in BACKENDS for j in ("off", "on")]
    Path(out_path).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "rows": rows}, indent=2) + "\n")
    print("| model | backend | jit asked → ran | across APIs | run to run | max ULP | first divergent epoch |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['backend']} | {r['jit']} | error: {r['error']} | | | |")
            continue
        yes = {True: "identical", False: "**differs**", None: "–"}
        ran = {True: "on", False: "off", None: "mixed"}[r["jit_effective"]]
        print(f"| {r['model']} | {r['backend']} | {r['jit']} → {ran} | {yes[r['api_identical']]} | "
              f"{yes[r['run_to_run_identical']]} | {r['max_ulp']} | "
              f"{'–' if r['first_divergent_epoch'] is None else r['first_divergent_epoch']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

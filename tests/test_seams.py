"""The process seam: importing any fitbench module loads no framework (each cell and each training runs in a
child started by fitbench.isolation, with its backend chosen before Keras is imported)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import importlib, pkgutil, sys
import fitbench
names = [m.name for m in pkgutil.walk_packages(fitbench.__path__, "fitbench.") if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
loaded = sorted({"keras", "tensorflow", "jax", "torch", "tf_keras"} & set(sys.modules))
print(len(names), loaded)
assert not loaded, loaded
"""


def test_importing_every_module_loads_no_framework():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    count = int(result.stdout.split()[0])
    assert count > 40  # every module was walked, the new ones included

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


def test_no_module_imports_one_that_imports_it_back():
    """No import cycles, top-level or inside functions: each is a definition in the wrong module (read from
    the sources, so a lazy import counts too)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "src"
    modules = {}
    for path in (root / "fitbench").rglob("*.py"):
        name = ".".join(path.relative_to(root).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fitbench"):
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    edges[name].add(target if target in modules else node.module)
            elif isinstance(node, ast.Import):
                edges[name].update(a.name for a in node.names if a.name in modules)
    edges = {m: {t for t in targets if t in modules and t != m} for m, targets in edges.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            current = todo.pop()
            if current == goal:
                return True
            if current not in seen:
                seen.add(current)
                todo.extend(edges[current])
        return False

    cycles = sorted((a, b) for a, targets in edges.items() for b in targets if a < b and reaches(b, a))
    assert not cycles, cycles

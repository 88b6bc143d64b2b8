"""`--model SPEC`: which model a command measures, checked in the parent before anything starts.

SPEC is `seed` (the default: the question's dense network, `--widths` sets its hidden layers), a zoo name
(fitbench.models.zoo), `package.module:function` (a factory returning a keras.Model), or a `.keras` file.
Only what can be checked without importing a framework is checked here; the rest (the function exists and
returns a keras.Model, the file loads, the data fits) is asked of a fresh process by
fitbench.models.workload.describe, and a bad answer is the same one-line exit 2.
"""

from __future__ import annotations

import difflib
import importlib.machinery
import importlib.util
import os
import re
import sys
import zipfile
from dataclasses import asdict, dataclass
from typing import Any

from fitbench import APIS
from fitbench.errors import UsageError
from fitbench.models import zoo
from fitbench.models.seed import SEED_WIDTHS

SEED, ZOO, FACTORY, FILE = "seed", "zoo", "factory", "file"
ZOO_APIS = {name: model.apis for name, model in zoo.ZOO.items()}  # the zoo imports no framework at import
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class ModelChoice:
    """A model as the user named it, with the options that shape it (JSON-able: it crosses into children)."""

    source: str = SEED  # seed | a zoo name | module:function | path.keras
    widths: tuple[int, ...] = SEED_WIDTHS  # the seed network's hidden widths (seed only)
    loss: str | None = None  # for a model that comes uncompiled (default: MSE)
    optimizer: str | None = None  # likewise (default: Adam(0.001))
    data: str | None = None  # an .npz file of x (or x0, x1, ...) and y (or y0, ...)

    @property
    def kind(self) -> str:
        if self.source == SEED:
            return SEED
        if self.source in ZOO_APIS:
            return ZOO
        if self.source.endswith(".keras"):
            return FILE
        return FACTORY

    @property
    def apis(self) -> tuple[str, ...]:
        """The API axis: the seed and most zoo models in all three forms, a factory or file as given."""
        return {SEED: APIS, ZOO: ZOO_APIS.get(self.source, ()), FACTORY: (FACTORY,), FILE: (FILE,)}[self.kind]

    @property
    def name(self) -> str:
        """What records call it: `seed`, the zoo name, `module:function`, or the file's name."""
        return os.path.basename(self.source) if self.kind == FILE else self.source

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelChoice":
        return cls(**{**d, "widths": tuple(d["widths"])})


def _find(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or an empty name part
        return False


def _make_importable(source: str, module: str) -> None:
    """Find a factory's module as `python -c "import module"` run here would, and the way a src/ layout
    expects: Python's path, then the current folder, then its `src/`. A folder that holds it goes on this
    process's path and on PYTHONPATH, so every child the command starts imports the same module (the
    children of `python -m fitbench.processes.worker` see the current folder, never `src/`)."""
    if _find(module):
        return
    here = os.getcwd()
    top = module.split(".")[0]
    for folder in (here, os.path.join(here, "src")):
        if os.path.isdir(folder) and importlib.machinery.PathFinder.find_spec(top, [folder]) is not None:
            if folder not in sys.path:
                sys.path.insert(0, folder)
            current = os.environ.get("PYTHONPATH")
            os.environ["PYTHONPATH"] = os.pathsep.join([folder, *([current] if current else [])])
            if _find(module):
                return
    raise UsageError(f"--model {source}: no module named {module!r} (looked on Python's path, in {here} and "
                     f"its src/; install your project with pip install -e . or add its folder to PYTHONPATH)")


def _top_level_names(path: str) -> set[str] | None:
    """The names a module's source binds at its top level (defs, classes, assignments, imports), read with
    `ast` — the parent never imports a user's module, which may import a framework; None when it cannot
    tell (no source, a syntax error, or a star import that could bring any name)."""
    import ast

    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return None
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if any(a.name == "*" for a in node.names):
                return None
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif not isinstance(node, ast.Expr):  # if/try/with blocks may bind it: do not guess
            return None
    return names


def _require_name(source: str) -> None:
    """A factory's function must exist in its module: said in one line now, not after a process has started
    (a misspelled name used to wait some 20 s for a child to import the user's code)."""
    module, _, name = source.partition(":")
    try:
        spec = importlib.util.find_spec(module)  # found already by _make_importable: its parents are loaded
    except (ImportError, ValueError):
        return
    origin = getattr(spec, "origin", None) if spec is not None else None
    if not origin or not origin.endswith(".py"):
        return
    names = _top_level_names(origin)
    if names is None or name in names:
        return
    functions = sorted(n for n in names if not n.startswith("_"))
    near = difflib.get_close_matches(name, functions, n=1)
    hint = f"; did you mean {near[0]}?" if near else (f" (it has {', '.join(functions[:8])})" if functions else "")
    raise UsageError(f"--model {source}: {module} has no function {name!r}{hint}")


def parse_model(text: str | None, widths: tuple[int, ...] = SEED_WIDTHS, loss: str | None = None,
                optimizer: str | None = None, data: str | None = None) -> ModelChoice:
    """A ModelChoice from --model and its options, or UsageError with one line."""
    source = (text or SEED).strip()
    if source.endswith(".keras"):
        if not os.path.isfile(source):
            raise UsageError(f"--model {source}: no such file")
        if not zipfile.is_zipfile(source):
            raise UsageError(f"--model {source}: not a Keras model file (a .keras file is a zip archive)")
        source = os.path.abspath(source)
    elif source not in (SEED, *ZOO_APIS):
        if ":" not in source:
            raise UsageError(f"unknown model {source!r}: give seed, one of {', '.join(ZOO_APIS)}, "
                             "package.module:function or a .keras file")
        if not _FACTORY.match(source):
            raise UsageError(f"--model {source}: a factory is written package.module:function")
        _make_importable(source, source.split(":")[0])
        _require_name(source)
    if data is not None:
        if not os.path.isfile(data):
            raise UsageError(f"--data {data}: no such file")
        if not zipfile.is_zipfile(data):
            raise UsageError(f"--data {data}: not an .npz file")
        data = os.path.abspath(data)
    if widths != SEED_WIDTHS and source != SEED:
        raise UsageError("--widths shapes the seed network only; drop it or use --model seed")
    return ModelChoice(source=source, widths=tuple(widths), loss=loss, optimizer=optimizer, data=data)

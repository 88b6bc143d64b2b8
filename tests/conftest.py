"""Shared helpers: run the CLI as a user would, in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SMALL = ["--widths", "16,16"]  # small hidden widths where the size of the network does not matter


def run_cli(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([sys.executable, "-m", "fitbench", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


@pytest.fixture
def without_tensorflow(tmp_path: Path) -> dict[str, str]:
    """Environment for a child process (and its children) in which `import tensorflow` fails as if it were
    not installed, like the lent GPU machines (JAX, PyTorch and CUDA, no TensorFlow)."""
    site = tmp_path / "no-tensorflow"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['tensorflow'] = None  # import raises\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


@pytest.fixture(scope="session")
def keras_cpu() -> Any:
    """Keras on TensorFlow, in this process, on the CPU (op determinism is never switched on here)."""
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras


def cli_exit(argv: list[str]) -> int:
    """fitbench's exit status for `argv` run in this process, argparse's own refusals (SystemExit) included."""
    from fitbench import cli

    try:
        return cli.main(argv)
    except SystemExit as exc:
        return int(exc.code)


# The slower tiers' files, longest first (their tests' total seconds in CI's --durations, 2026-12-03: the two
# asv alert files 345 and 299 s, then 247, 246, 194, 182, 115, 101): with `-n 2 --dist loadfile
# --no-loadscope-reorder` (.ci/run) each worker starts on one of the two longest and takes the next longest
# when it is free, so no long file is left to run alone at the end. The files not named keep their order.
LONGEST_FIRST = ("test_alert.py", "test_asv_init.py", "test_models.py", "test_backends.py", "test_explain.py",
                 "test_cli.py", "test_versions.py", "test_devices.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # a stable sort: the rest keep their order

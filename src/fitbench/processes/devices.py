"""Parent side: which backends see a GPU, asked once per backend (never once per cell)."""

from __future__ import annotations

from fitbench.errors import UsageError
from fitbench.processes.isolation import IsolatedError, process_env, run_isolated
from fitbench.processes.runtime import gpu_driver_present, gpu_names
from fitbench.stacks import Stack


def gpus_unseen(backends: list[str], timeout_s: float) -> dict[str, str]:
    """{backend: why its GPU cells are skipped} for the backends that see no GPU. No NVIDIA driver: all of
    them, without starting anything; else one child process per backend asks its framework."""
    if not gpu_driver_present():
        return {b: "no GPU visible: no NVIDIA driver on this machine" for b in backends}
    unseen = {}
    for backend in backends:
        try:
            names = run_isolated(gpu_names, {"backend": backend}, env=process_env(Stack(backend), "gpu"),
                                 timeout_s=timeout_s)
        except IsolatedError as exc:
            names, why = [], f"asking {backend} for GPUs failed: {exc}"
        else:
            why = f"no GPU visible to {backend} on this machine"
        if not names:
            unseen[backend] = why
    return unseen


def require_gpu(backend: str, asked_by: str) -> None:
    """UsageError (exit 2) unless `backend` sees a GPU here: asked of a fresh process, after a driver check."""
    if not gpu_driver_present():
        raise UsageError(f"{asked_by}: no NVIDIA GPU driver on this machine")
    unseen = gpus_unseen([backend], 600)
    if unseen:
        raise UsageError(f"{asked_by}: {unseen[backend]}")

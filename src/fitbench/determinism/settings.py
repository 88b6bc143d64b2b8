"""`DeterminismSettings`: one determinism check's choices, as one value from the CLI to the child processes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from fitbench.errors import UsageError
from fitbench.models.choice import ModelChoice
from fitbench.models.seed import ModelSpec, check_api
from fitbench.stacks import KERAS_2_BACKEND, Stack, require_seed_model


@dataclass(frozen=True)
class DeterminismSettings:
    apis: tuple[str, ...] = ("sequential", "functional", "subclassed")
    spec: ModelSpec = field(default_factory=ModelSpec)
    epochs: int = 3
    jit: bool = False  # requested; what Keras ran is each run's jit_effective
    seed: int = 0
    samples: int = 1  # 1: the seed's own (x, y); more: seeded synthetic data
    batch_size: int = 1
    intra_op_threads: int = 2  # TensorFlow and PyTorch
    inter_op_threads: int = 1
    op_determinism: bool = True  # the backend's determinism switch
    nudge_api: str | None = None  # self-test: this API's first weight moved by one ULP
    runs: int = 2  # separate training processes
    backend: str = "tensorflow"
    keras_major: int = 3  # 2: tf-keras (Keras 2) on TensorFlow, the seed network only (fitbench.stacks)
    device: str = "cpu"
    model: ModelChoice = field(default_factory=ModelChoice)  # --model: the seed network of `spec` by default
    devices: tuple[int, ...] = (1,)  # device counts (keras.distribution.DataParallel); each trained `runs` times
    hosts: int = 1  # >1: the device count equal to it also trained as this many local processes, a device each

    def check(self) -> "DeterminismSettings":
        """Bad input as one UsageError line (exit 2), before any process starts."""
        for api in self.apis:
            if api not in self.model.apis:
                check_api(api)  # an unknown name says so; a known one this model lacks, below
                raise UsageError(f"the {self.model.name} model has no {api} form; choose from "
                                 f"{', '.join(self.model.apis)}")
        if not self.apis:
            raise UsageError("--api must name at least one api")
        if self.keras_major == 2 and self.backend != KERAS_2_BACKEND:
            raise UsageError(f"Keras 2 (tf-keras) runs on TensorFlow only, not on {self.backend}")
        require_seed_model([Stack(self.backend, self.keras_major)], self.model.name)
        if self.runs < 2:
            raise UsageError(f"--runs must be at least 2 (run-to-run needs two processes), got {self.runs}")
        if self.nudge_api is not None and self.nudge_api not in self.apis:
            raise UsageError(f"--nudge {self.nudge_api} is not among the apis being checked ({', '.join(self.apis)})")
        for name in ("epochs", "samples", "batch_size", "intra_op_threads", "inter_op_threads"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be a positive integer, got {getattr(self, name)}")
        from fitbench.measure.distributed import check_device_counts

        check_device_counts(self.devices, [Stack(self.backend, self.keras_major).name], [self.batch_size], self.device)
        if self.hosts > 1:
            if self.hosts not in self.devices:
                raise UsageError(f"--hosts {self.hosts} trains {self.hosts} devices as {self.hosts} processes, one "
                                 f"device each: give --devices that count, e.g. --devices 1,{self.hosts}")
            if self.samples % self.batch_size:
                raise UsageError(f"--hosts: --samples {self.samples} must be whole batches of {self.batch_size} "
                                 "(each host feeds its slice of every batch)")
            if self.device != "cpu":
                raise UsageError("--hosts runs the hosts as local processes on the CPU (gloo); --device gpu with it "
                                 "is a cluster's job")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "apis": list(self.apis), "spec": self.spec.to_dict(), "model": self.model.to_dict(),
                "devices": list(self.devices)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DeterminismSettings":
        return cls(**{**d, "apis": tuple(d["apis"]), "spec": ModelSpec.from_dict(d["spec"]),
                      "devices": tuple(d.get("devices") or (1,)),
                      "model": ModelChoice.from_dict(d["model"]) if d.get("model") else ModelChoice()})

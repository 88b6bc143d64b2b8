"""What `fitbench run` measures: cells (one per fresh process) and the plan of them. Parent side, no framework."""

from __future__ import annotations

from dataclasses import dataclass

from fitbench import APIS, DEVICES
from fitbench.errors import UsageError
from fitbench.stacks import STACK_NAMES, Stack, parse_stack, require_model_kind

FIT = "fit"  # cell kind: training steps on a synthetic batch
SEED_EPOCH = "seed_epoch"  # cell kind: the seed's workload, 1 sample + validation, timed per epoch
PLAIN, TUNED = "plain", "tuned"  # fit variants: compile + fit as written, or with the speed knobs on
VARIANTS = (PLAIN, TUNED)
TUNED_STEPS_PER_EXECUTION = 8  # FitHarness's default for the tuned variant (a Profile can set its own)


@dataclass(frozen=True)
class Cell:
    """One measurement: what `fitbench run` times in one fresh process."""

    kind: str
    api: str
    jit: bool
    device: str
    batch_size: int
    backend: str = "tensorflow"
    variant: str = PLAIN
    model: str = "seed"  # fitbench.models.ModelChoice.name
    keras_major: int = 3  # 2: tf-keras on TensorFlow (fitbench.stacks)
    determinism: str | None = None  # the backend's determinism switch on in this process (its name), or None
    device_count: int = 1  # >1: keras.distribution.DataParallel over this many devices (the global batch split)


    @property
    def stack(self) -> Stack:
        return Stack(self.backend, self.keras_major)

    def label(self) -> str:
        what = f"batch {self.batch_size}" if self.kind == FIT else "seed epoch"
        tuned = " tuned" if self.variant == TUNED else ""
        model = "" if self.model == "seed" else f"{self.model} "
        det = f" determinism={self.determinism}" if self.determinism else ""
        det += f" devices={self.device_count}" if self.device_count > 1 else ""
        return (f"{self.stack.name} {model}{self.api} jit={'on' if self.jit else 'off'}{tuned}{det} {self.device} "
                f"{what}")


def plan_cells(apis: list[str], jits: list[bool], devices: list[str], batch_sizes: list[int],
               backend: str | list[str] = "tensorflow", include_seed: bool = True,
               variants: list[str] = (PLAIN,), model: str = "seed", model_apis: tuple[str, ...] = APIS,
               determinism: tuple[bool, ...] = (False,), switches: dict[str, str] | None = None,
               device_counts: tuple[int, ...] = (1,)) -> list[Cell]:
    """Every (backend, device, batch, api, jit, variant, determinism) fit cell, then the seed-workload cells
    (plain only: the tuned knobs are about many steps per epoch; the seed network only); validates the choices.
    `backend` names stacks (fitbench.stacks: tensorflow, jax, torch, tf-keras). `determinism` is the switch axis
    (False, True or both; off and on of a cell are neighbours); `switches` names a stack's switch (default: its
    first, fitbench.determinism.switch). `device_counts` is the devices axis (fitbench.measure.distributed; the
    seed's one-sample epochs stay on one device). `model_apis` are the forms the model comes in (a factory's or
    a file's one form is its own api)."""
    from fitbench.determinism.switch import default_switch
    from fitbench.measure.distributed import check_device_counts

    backends = [backend] if isinstance(backend, str) else list(backend)
    for what, chosen, known in (("api", apis, model_apis), ("device", devices, DEVICES),
                                ("backend", backends, STACK_NAMES), ("variant", variants, VARIANTS)):
        for value in chosen:
            if value not in known:
                if what == "api" and value in APIS:
                    raise UsageError(f"the {model} model has no {value} form; choose from {', '.join(known)}")
                raise UsageError(f"unknown {what} {value!r}; choose from {', '.join(known)}")
    for b in batch_sizes:
        if b <= 0:
            raise UsageError(f"batch size must be a positive integer, got {b}")
    stacks = [parse_stack(b) for b in backends]
    require_model_kind(stacks, model)
    switches = switches or {}
    check_device_counts(device_counts, [s.name for s in stacks], batch_sizes, devices[0] if devices else "cpu")

    def det(s: Stack, on: bool) -> str | None:
        return (switches.get(s.name) or default_switch(s.name)) if on else None

    cells = [Cell(FIT, api, jit, device, b, s.backend, variant, model, s.keras_major, det(s, on), n)
             for s in stacks for device in devices for b in batch_sizes for api in apis for jit in jits
             for variant in variants for on in determinism for n in device_counts]
    if include_seed and model == "seed":
        cells += [Cell(SEED_EPOCH, api, jit, device, 1, s.backend, keras_major=s.keras_major, determinism=det(s, on))
                  for s in stacks for device in devices for api in apis for jit in jits for on in determinism]
    return cells



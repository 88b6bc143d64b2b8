"""Run profiles: how many cells and how many timed steps. `quick` fits a few minutes on 2 CPU cores."""

from __future__ import annotations

from dataclasses import dataclass

from fitbench.errors import UsageError


@dataclass(frozen=True)
class Profile:
    name: str
    batch_sizes: tuple[int, ...]
    warmup_steps: int  # excluded from the samples; the first of them is the compile step
    steps: int  # timed steps per repeat
    repeats: int  # timed fit() calls per cell, samples pooled
    seed_warmup_epochs: int
    seed_epochs: int
    # the tuned variant's steps_per_execution: its cells time `steps` executions of this many steps each
    steps_per_execution: int = 8


PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", batch_sizes=(1, 32, 256), warmup_steps=3, steps=20, repeats=1,
                     seed_warmup_epochs=3, seed_epochs=20),
    "regular": Profile("regular", batch_sizes=(1, 32, 256, 2048), warmup_steps=10, steps=100, repeats=3,
                       seed_warmup_epochs=5, seed_epochs=100),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise UsageError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}") from None

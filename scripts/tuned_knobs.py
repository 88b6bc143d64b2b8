"""The gain each knob of the tuned variant brings, measured in one process with interleaved rounds.

    KERAS_BACKEND=tensorflow|jax|torch python scripts/tuned_knobs.py BATCH on|off

Builds the functional seed network once per configuration — plain, each knob of the backend's tuned
variant alone, and all of them (the tuned variant): TensorFlow: prefetch, steps_per_execution=8; JAX: data
on the device, steps_per_execution=8; PyTorch: data on the device (Keras runs one step per execution
there) — plus the raw step, warms each up, then times 5 interleaved rounds of 40 steps of each, so
a busy neighbour slows every configuration alike. Prints the median time per training step, samples/s, the
speed-up over plain fit and raw/fit (the efficiency). CPU only (the GPU is hidden).
"""

import os
import statistics
import sys

os.environ["CUDA_VISIBLE_DEVICES"] = "-1"

from fitbench.measure.harness import FitHarness  # noqa: E402
from fitbench.measure.raw import RawHarness  # noqa: E402
from fitbench.models.seed import ModelSpec  # noqa: E402

batch, jit = int(sys.argv[1]), sys.argv[2] == "on"
backend = os.environ.get("KERAS_BACKEND", "tensorflow")
data_knob = "prefetch" if backend == "tensorflow" else "data_on_device"
configs = {"plain": {}, f"{data_knob} only": {data_knob: True}}
if backend != "torch":  # Keras on PyTorch runs one step per execution
    configs["spe=8 only"] = {"variant": "tuned", "steps_per_execution": 8, data_knob: False}
configs["tuned (all knobs)"] = {"variant": "tuned"}
harnesses = {name: FitHarness("functional", jit, batch, ModelSpec(), 0, **kw) for name, kw in configs.items()}
raw = RawHarness(backend, jit, batch, ModelSpec(), 0)
for harness in harnesses.values():
    harness.warm_up(3)
raw.warm_up(3)
samples: dict[str, list[float]] = {name: [] for name in [*harnesses, "raw"]}
for _ in range(5):
    for name, harness in harnesses.items():
        samples[name] += harness.fit_steps(40)
    samples["raw"] += raw.run_steps(40)
median = {name: statistics.median(times) for name, times in samples.items()}
for name, m in median.items():
    print(f"{name:26s} {m * 1e3:7.3f} ms/step {batch / m:9.0f} samples/s  vs plain {median['plain'] / m:5.2f}x"
          f"  raw/fit {median['raw'] / m:5.2f}")

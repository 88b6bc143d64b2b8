"""fitbench: how fast is a Keras fit loop, and is its training deterministic."""

__version__ = "0.1.0"

APIS = ("sequential", "functional", "subclassed")
BACKENDS = ("tensorflow", "jax", "torch")
DEVICES = ("cpu", "gpu")

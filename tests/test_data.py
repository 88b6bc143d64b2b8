import re
from pathlib import Path

import numpy as np

from fitbench.models.seed import ModelSpec
from fitbench.models.seed_data import seed_input, seed_target, synthetic_batch

SEED_FILE = Path(__file__).resolve().parents[2] / "shared" / "seed" / "question-sequential-vs-functional.txt"


def test_seed_target_is_the_questions_200_values():
    y = seed_target()
    assert y.shape == (1, 200) and y.dtype == np.float32
    assert y[0, 0] == np.float32(0.01897711) and y[0, -1] == np.float32(-0.04474135)
    if SEED_FILE.exists():  # the shared seed beside the checkout: compare every value
        text = SEED_FILE.read_text()
        values = [float(v) for v in re.search(r"y = np.array\(\[(.*?)\]\)", text, re.S).group(1).split(",")]
        np.testing.assert_array_equal(y[0], np.asarray(values, np.float32))


def test_seed_input_is_seeded_uniform_1_by_4096():
    x = seed_input(3)
    assert x.shape == (1, 4096) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() < 1.0
    np.testing.assert_array_equal(x, seed_input(3))
    assert not np.array_equal(x, seed_input(4))


def test_synthetic_batches_have_any_size_and_are_seeded():
    spec = ModelSpec(widths=(4,))
    x, y = synthetic_batch(spec, 5, seed=1)
    assert x.shape == (5, 4096) and y.shape == (5, 200)
    np.testing.assert_array_equal(x, synthetic_batch(spec, 5, seed=1)[0])

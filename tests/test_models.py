"""--model: the zoo, a user's factory and a .keras file, through run and determinism on every backend."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import load, run_cli
from fitbench import APIS
from fitbench.errors import UsageError
from fitbench.measure.cells import plan_cells
from fitbench.models.choice import FACTORY, FILE, SEED, ZOO, ModelChoice, parse_model

FACTORIES = textwrap.dedent('''
    import keras
    import numpy as np


    def two_inputs():
        """Two inputs, one of them integer token ids into an Embedding; compiled by the factory."""
        tokens = keras.Input(shape=(6,), dtype="int32", name="tokens")
        feats = keras.Input(shape=(4,), name="feats")
        e = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(50, 8)(tokens))
        h = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()([e, feats]))
        model = keras.Model([tokens, feats], keras.layers.Dense(3, activation="softmax")(h))
        model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.SGD(0.05))
        return model


    def unseeded():
        """Weights drawn from an unseeded generator: two calls never start from the same weights."""
        model = keras.Sequential([keras.Input(shape=(5,)), keras.layers.Dense(3)])
        rng = np.random.default_rng()
        model.set_weights([rng.standard_normal(w.shape).astype("float32") for w in model.get_weights()])
        return model


    class Twice(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x) * 2.0


    def subclassed_with_batch():
        return Twice()


    def make_batch(batch_size, seed):
        rng = np.random.default_rng(seed)
        return rng.random((batch_size, 7), dtype=np.float32), rng.random((batch_size, 2), dtype=np.float32)


    subclassed_with_batch.make_batch = make_batch  # the factory's own data


    def not_a_model():
        return 42


    class _Boom(keras.layers.Layer):
        def call(self, x):
            raise ValueError("planted: the user's own message")


    def raises_in_call():
        return keras.Sequential([keras.Input(shape=(5,)), _Boom()])


    def hangs():
        import time

        time.sleep(3600)


    def keras2_report():
        """A Keras 2 -> 3 slowdown report's kind of model (keras-team/keras#19953): Dense/Dropout, its own loss
        with label smoothing and an AUC metric, compiled here; public `keras` API only, so Keras 2 runs it."""
        inputs = keras.Input(shape=(12,))
        x = inputs
        for _ in range(3):
            x = keras.layers.Dropout(0.2)(keras.layers.Dense(16, activation="relu")(x))
        model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1), metrics=[keras.metrics.AUC()])
        return model


    def uses_ops():
        """Keras 3 only: keras.ops does not exist in Keras 2."""
        model = keras.Sequential([keras.Input(shape=(5,)), keras.layers.Dense(3)])
        keras.ops.mean(keras.ops.ones((2,)))
        return model


    def wrong_shape():
        model = keras.Sequential([keras.Input(shape=(5,)), keras.layers.Dense(3)])
        return model
''')


@pytest.fixture
def user_models(tmp_path: Path) -> dict[str, str]:
    """A user's module of factories, importable by the CLI and its children (PYTHONPATH)."""
    (tmp_path / "usermodels.py").write_text(FACTORIES)
    return {"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}".rstrip(os.pathsep)}


# ---------- the parent's checks (no framework) ----------

def test_model_choices_know_their_kind_and_forms(tmp_path):
    assert ModelChoice().kind == SEED and ModelChoice().apis == APIS
    assert parse_model("conv").kind == ZOO and parse_model("attention").apis == ("functional", "subclassed")
    assert parse_model("json:dumps").kind == FACTORY and parse_model("json:dumps").apis == (FACTORY,)
    saved = tmp_path / "m.keras"
    import zipfile

    with zipfile.ZipFile(saved, "w") as z:
        z.writestr("config.json", "{}")
    choice = parse_model(str(saved))
    assert choice.kind == FILE and choice.name == "m.keras" and choice.apis == (FILE,)
    assert ModelChoice.from_dict(choice.to_dict()) == choice


@pytest.mark.parametrize("spec, fragment", [
    ("resnet", "unknown model 'resnet'"),
    ("no such:thing", "package.module:function"),
    ("nosuchmodule_xyz:build", "no module named 'nosuchmodule_xyz'"),
    ("missing.keras", "no such file"),
])
def test_bad_model_specs_are_usage_errors(spec, fragment):
    with pytest.raises(UsageError, match=fragment):
        parse_model(spec)


def test_a_file_that_is_not_a_keras_archive_and_widths_on_another_model_are_refused(tmp_path):
    bogus = tmp_path / "x.keras"
    bogus.write_text("hello")
    with pytest.raises(UsageError, match="not a Keras model file"):
        parse_model(str(bogus))
    with pytest.raises(UsageError, match="--widths shapes the seed network only"):
        parse_model("conv", widths=(8,))
    with pytest.raises(UsageError, match="--data"):
        parse_model("conv", data=str(tmp_path / "none.npz"))


def test_plan_cells_takes_the_models_forms_and_no_seed_epoch_cells_for_other_models():
    cells = plan_cells(["functional", "subclassed"], [False], ["cpu"], [8], model="attention",
                       model_apis=("functional", "subclassed"))
    assert {c.model for c in cells} == {"attention"} and {c.kind for c in cells} == {"fit"}
    with pytest.raises(UsageError, match="the attention model has no sequential form"):
        plan_cells(["sequential"], [False], ["cpu"], [8], model="attention", model_apis=("functional", "subclassed"))
    factory = plan_cells(["factory"], [True], ["cpu"], [8], model="m:f", model_apis=("factory",))
    assert [c.api for c in factory] == ["factory"]


# ---------- the child's side, in this process (Keras on TensorFlow) ----------

@pytest.mark.parametrize("name", ["conv", "text", "attention"])
def test_zoo_models_start_from_the_same_weights_in_every_form_and_train(keras_cpu, name):
    from fitbench.models.workload import Workload

    workload = Workload(parse_model(name), seed=3)
    weights = []
    for api in workload.choice.apis:
        model = workload.compile(workload.build(api), jit=False)
        weights.append(model.get_weights())
        x, y = workload.batch(model, 4)
        history = model.fit(x, y, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
    for other in weights[1:]:
        assert len(other) == len(weights[0])
        assert all(np.array_equal(a, b) for a, b in zip(weights[0], other))


def test_synthetic_data_follows_the_models_inputs_and_sparse_loss(keras_cpu, user_models, monkeypatch):
    import sys

    monkeypatch.syspath_prepend(user_models["PYTHONPATH"].split(os.pathsep)[0])
    sys.modules.pop("usermodels", None)
    from fitbench.models.workload import Workload

    workload = Workload(parse_model("usermodels:two_inputs"), seed=0)
    model = workload.compile(workload.build(FACTORY), jit=False)
    (tokens, feats), y = workload.batch(model, 16)
    assert tokens.dtype == np.int32 and tokens.shape == (16, 6) and 0 <= tokens.min() and tokens.max() < 50
    assert feats.dtype == np.float32 and feats.shape == (16, 4)
    assert y.shape == (16,) and set(np.unique(y)) <= {0, 1, 2}  # class ids for the sparse loss
    assert type(model.optimizer).__name__ == "SGD"  # the factory's optimizer, rebuilt fresh
    x_sub, _ = Workload(parse_model("usermodels:subclassed_with_batch")).batch(None, 4)
    assert x_sub.shape == (4, 7)  # the factory's make_batch


# ---------- through the CLI, each cell in its own process ----------

@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compiled two-input model saved as .keras (made here, on TensorFlow; the file loads on any backend)."""
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    import keras

    tokens, feats = keras.Input(shape=(6,), dtype="int32"), keras.Input(shape=(4,))
    h = keras.layers.Concatenate()([keras.layers.Flatten()(keras.layers.Embedding(30, 2)(tokens)), feats])
    model = keras.Model([tokens, feats], keras.layers.Dense(2)(h))
    model.compile(loss="mse", optimizer="adam")
    path = tmp_path_factory.mktemp("saved") / "saved.keras"
    model.save(path)
    return path


@pytest.mark.processes
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_run_times_a_zoo_model_a_factory_and_a_saved_file_with_their_floors(tmp_path, user_models, saved_model,
                                                                            backend):
    # jit on means torch.compile on PyTorch: minutes per model on 2 cores, and the seed's tests cover it there
    jit = "off" if backend == "torch" else "on"
    # every kind of model on tensorflow, and a factory of a Keras 2 -> 3 report's kind on Keras 3 and Keras 2
    # in one run; on jax and torch the two-input factory, the most demanding (CI's time)
    specs = (("text", backend), ("usermodels:keras2_report", "tensorflow,tf-keras"), (str(saved_model), backend)) \
        if backend == "tensorflow" else (("usermodels:two_inputs", backend),)
    for spec, stacks in specs:
        out = tmp_path / f"run-{Path(spec).name}.json"
        result = run_cli("run", "--model", spec, "--backend", stacks, "--batch-sizes", "4", "--jit", jit,
                         "--variant", "plain", "--json", str(out), env=user_models)
        assert result.returncode == 0, result.stderr
        records = load(out)["records"]
        assert records and all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
        assert sorted({r.get("keras_major", 3) for r in records}) == ([2, 3] if "tf-keras" in stacks else [3])
        for r in records:
            assert r["model"] == Path(spec).name and r["raw_step_time_s"] > 0 and r["efficiency"] > 0
            assert r["widths"] is None and r["params"] > 0
            assert (r["flops_source"] == "xla_cost_analysis") == (backend == "jax")  # else null, not a guess
            assert (r["flops_per_step"] is None) == (r["flops_source"] is None)


@pytest.mark.processes
@pytest.mark.parametrize("spec", ["usermodels:two_inputs", "saved"])
def test_determinism_of_a_factory_and_a_saved_file_run_to_run(tmp_path, user_models, saved_model, spec):
    out = tmp_path / "det.json"
    result = run_cli("determinism", "--model", str(saved_model) if spec == "saved" else spec, "--epochs", "2",
                     "--samples", "8", "--batch-size", "4", "--json", str(out), env=user_models)
    assert result.returncode == 0, result.stderr
    (pair,) = load(out)["pairs"]
    assert pair["identical"] and pair["scope"] == "run_to_run" and pair["cosine_a"] is None


@pytest.mark.processes
def test_bad_factories_are_one_line_and_exit_2(user_models):
    import time

    for spec, fragment, *args in (
            ("usermodels:not_a_model", "returned int, not a keras.Model"),
            ("usermodels:nothing_here", "has no function 'nothing_here'"),
            # the user's own message, not Keras' wrapper alone, with the child's traceback kept
            ("usermodels:raises_in_call", "ValueError: planted: the user's own message (raised in"),
            # a factory that hangs ends within --cell-timeout, not 600 s
            ("usermodels:hangs", "did not finish within 5 s (--cell-timeout", "--cell-timeout", "5"),
            # Keras 3 code on the Keras 2 row: said before any cell, naming the row
            ("usermodels:uses_ops", "usermodels:uses_ops on the tf-keras row (Keras 2: its `keras` is tf-keras): "
                                    "AttributeError: module 'tf_keras' has no attribute 'ops'", "--backend",
             "tf-keras")):
        started = time.monotonic()
        result = run_cli("run", "--model", spec, *args, env=user_models)
        assert result.returncode == 2 and fragment in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        if spec.endswith("hangs"):
            assert time.monotonic() - started < 30
        if spec.endswith("raises_in_call"):  # the line names the file that keeps the child's traceback
            kept = result.stderr.rsplit("(its traceback: ", 1)[1].rstrip().rstrip(")")
            assert "Traceback" in Path(kept).read_text() and "the user's own message" in Path(kept).read_text()


@pytest.mark.processes
def test_data_that_does_not_fit_the_model_is_exit_2(tmp_path, user_models):
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((4, 9), np.float32), y=np.zeros((4, 3), np.float32))
    result = run_cli("run", "--model", "usermodels:wrong_shape", "--data", str(data), env=user_models)
    assert result.returncode == 2 and "one training step on its data failed" in result.stderr, result.stderr


@pytest.mark.processes
def test_a_factory_that_does_not_seed_its_weights_diverges_at_epoch_0(tmp_path, user_models):
    out = tmp_path / "det.json"
    result = run_cli("determinism", "--model", "usermodels:unseeded", "--epochs", "1", "--samples", "4",
                     "--json", str(out), env=user_models)
    assert result.returncode == 1, result.stderr
    (pair,) = load(out)["pairs"]
    assert pair["scope"] == "run_to_run" and pair["first_divergent_epoch"] == 0
    assert pair["identical_initial_weights"] is False


@pytest.mark.parametrize("layout", ["flat", "src"])
def test_a_factory_in_the_current_folder_or_its_src_layout_is_found_and_its_children_see_it(
        tmp_path, monkeypatch, layout):
    """`fitbench run --model mymodels:build` in the folder holding mymodels.py (or src/mypkg/...) finds it,
    as `python -c "import mymodels"` there does; the folder goes on PYTHONPATH for the command's children."""
    import sys

    folder = tmp_path if layout == "flat" else tmp_path / "src"
    name = f"fb_user_models_{layout}"
    target = folder / name
    target.mkdir(parents=True)
    (target / "__init__.py").write_text("")
    (target / "nets.py").write_text("def build():\n    return None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    choice = parse_model(f"{name}.nets:build")
    assert choice.kind == FACTORY
    assert os.environ["PYTHONPATH"].split(os.pathsep)[0] == str(folder)
    with pytest.raises(UsageError, match=r"no module named 'fb_user_models_none'.*src/.*pip install -e \."):
        parse_model("fb_user_models_none:build")


def test_data_whose_arrays_disagree_on_the_number_of_samples_is_refused():
    from fitbench.models.workload import ModelError, check_rows

    assert check_rows(np.zeros((10, 4)), np.zeros((10, 1))) == 10
    assert check_rows([np.zeros((6, 4)), np.zeros((6, 2))], {"out": np.zeros((6,))}) == 6
    with pytest.raises(ModelError, match="one row per sample, the same number each, got x 10, y 7"):
        check_rows(np.zeros((10, 64)), np.zeros((7, 1)))
    with pytest.raises(ModelError, match="x1 5"):
        check_rows([np.zeros((6, 4)), np.zeros((5, 2))], np.zeros((6,)))
    with pytest.raises(ModelError, match="y has no rows"):
        check_rows(np.zeros((3, 2)), np.float32(1.0))


def test_a_misspelled_factory_is_one_line_before_any_process(tmp_path, monkeypatch):
    from fitbench.models.choice import parse_model

    (tmp_path / "spelled.py").write_text("import keras\nopen(__file__ + '.ran', 'w').close()\n\n"
                                          "def build():\n    return keras.Sequential()\n\n"
                                          "def build_wide():\n    pass\n")
    (tmp_path / "starry.py").write_text("from os.path import *\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=r"--model spelled:buidl: spelled has no function 'buidl'; did you mean "
                                         r"build\?"):
        parse_model("spelled:buidl")
    with pytest.raises(UsageError, match="spelled has no function 'model' \\(it has build, build_wide, keras\\)"):
        parse_model("spelled:model")
    assert parse_model("spelled:build").source == "spelled:build"
    assert parse_model("starry:anything").source == "starry:anything"  # a star import could bind it: the child says
    assert not (tmp_path / "spelled.py.ran").exists()  # read, never run, in the parent

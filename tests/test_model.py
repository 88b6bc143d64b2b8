import numpy as np
import pytest

from fitbench import APIS
from fitbench.errors import UsageError
from fitbench.models.seed import (
    ModelSpec,
    build_model,
    compile_model,
    jit_effective,
    param_count,
    parse_widths,
    train_step_flops,
    trainable_param_count,
)


def test_seed_spec_has_the_seed_questions_parameter_count():
    assert param_count(ModelSpec()) == 1_231_816


@pytest.mark.parametrize("api", APIS)
def test_full_seed_model_counts_1231816_trainable_parameters_in_keras(keras_cpu, api):
    model = build_model(api, ModelSpec(), seed=0)
    assert trainable_param_count(model) == 1_231_816
    assert model.count_params() == 1_231_816
    assert [w.shape for w in model.get_weights()] == [(4096, 256), (256,), (256, 256), (256,), (256, 256), (256,),
                                                      (256, 200), (200,)]


def test_all_three_apis_start_from_identical_weights_on_the_full_seed_model(keras_cpu):
    weights = {api: build_model(api, ModelSpec(), seed=7).get_weights() for api in APIS}
    for api in APIS[1:]:
        assert len(weights[api]) == len(weights["sequential"])
        for a, b in zip(weights["sequential"], weights[api]):
            assert a.tobytes() == b.tobytes(), api


def test_a_different_seed_gives_different_initial_weights(keras_cpu):
    a = build_model("functional", ModelSpec(widths=(8,)), seed=1).get_weights()
    b = build_model("functional", ModelSpec(widths=(8,)), seed=2).get_weights()
    assert not np.array_equal(a[0], b[0])


def test_widths_and_activation_are_configurable(keras_cpu):
    spec = ModelSpec(widths=(8, 4), activation="relu")
    model = build_model("subclassed", spec, seed=0)
    assert [w.shape for w in model.get_weights()] == [(4096, 8), (8,), (8, 4), (4,), (4, 200), (200,)]
    assert trainable_param_count(model) == param_count(spec)
    assert all(layer.activation.__name__ == "relu" for layer in model.dense_layers)


def test_jit_effective_reads_back_what_keras_will_do(keras_cpu):
    spec = ModelSpec(widths=(8,))
    assert jit_effective(compile_model(build_model("sequential", spec, seed=0), True, spec)) is True
    assert jit_effective(compile_model(build_model("sequential", spec, seed=0), False, spec)) is False


@pytest.mark.parametrize("text, widths", [("256,256,256", (256, 256, 256)), ("8", (8,)), (" 4, 2 ", (4, 2))])
def test_parse_widths_accepts_comma_separated_positive_integers(text, widths):
    assert parse_widths(text) == widths


@pytest.mark.parametrize("text", ["", "256,,256", "a,b", "0", "-3", "2.5", "256;256"])
def test_parse_widths_rejects_malformed_input(text):
    with pytest.raises(UsageError, match="--widths"):
        parse_widths(text)


def test_train_step_flops_counts_forward_and_both_backward_products():
    spec = ModelSpec(input_dim=10, widths=(5,), output_dim=3)
    # layer 1 (10x5): forward + weight grad only; layer 2 (5x3): forward + weight grad + input grad
    assert train_step_flops(spec, 4) == 2 * 4 * 10 * 5 * 2 + 2 * 4 * 5 * 3 * 3
    assert train_step_flops(ModelSpec(), 2) == 2 * train_step_flops(ModelSpec(), 1)

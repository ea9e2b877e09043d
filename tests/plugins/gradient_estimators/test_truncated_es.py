"""`truncated_es` on the linear problem: the truncated gradient, determinism in its key, its config checks."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from metaplastic.core import config as config_lib
from metaplastic.plugins.gradient_estimators.pes import PES
from metaplastic.plugins.gradient_estimators.truncated_backprop import TruncatedBackprop
from metaplastic.plugins.gradient_estimators.truncated_es import TruncatedES

from helpers.linear_problem import (ARCH, NUM_TASKS, UNROLL, tiny_digits_config, mean_and_standard_error, problem, run_horizon,
                                    truncation)


def test_truncated_es_matches_the_truncated_gradient(problem):
    """From the carried state, ES estimates the gradient of one truncation with its start state held fixed."""
    theta, data = problem["theta"], problem["data"]
    es = TruncatedES(UNROLL, std=0.05, num_pairs=128, max_loss_diff=1e6)
    state = es.init_state(theta, problem["init_key"], ARCH, NUM_TASKS, 8)
    _, state, _ = es.estimate(theta, state, truncation(data, 0), jax.random.PRNGKey(5))
    # the carried state is the unperturbed θ's trajectory, the one truncated backprop carries too
    reference = TruncatedBackprop(UNROLL).init_state(theta, problem["init_key"], ARCH, NUM_TASKS, 8)
    _, reference, _ = TruncatedBackprop(UNROLL).estimate(theta, reference, truncation(data, 0),
                                                   jax.random.PRNGKey(5))
    np.testing.assert_allclose(state.inner.params["w"], reference.inner.params["w"], rtol=1e-5)

    second = truncation(data, 1)
    samples = [np.asarray(es.estimate(theta, state, second, jax.random.PRNGKey(200 + i))[0]["drive"],
                          np.float64) for i in range(30)]
    mean, standard_error = mean_and_standard_error(samples)
    grad_tbptt, _, _ = TruncatedBackprop(UNROLL).estimate(theta, reference, second, jax.random.PRNGKey(0))
    target = np.asarray(grad_tbptt["drive"], np.float64)
    assert np.all(np.abs(mean - target) < 4 * standard_error), (mean, target, standard_error)
    assert standard_error.max() < 0.05 * np.linalg.norm(target)


def test_es_is_deterministic_in_its_key(problem):
    es = PES(UNROLL, std=0.05, num_pairs=3)
    first, _ = run_horizon(es, problem, jax.random.PRNGKey(7))
    again, _ = run_horizon(es, problem, jax.random.PRNGKey(7))
    other, _ = run_horizon(es, problem, jax.random.PRNGKey(8))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


@pytest.mark.parametrize("field,value", [("std", "-0.1"), ("num_pairs", "0"), ("max_loss_diff", "0.0")])
def test_bad_es_config_is_one_line_naming_the_field(field, value):
    config = tiny_digits_config("--config.gradient_estimator=pes", f"--config.gradient_estimator_config.{field}={value}")
    with pytest.raises(config_lib.ConfigError) as error:
        config_lib.build_components(config).estimator
    message = str(error.value)
    assert "\n" not in message and f"gradient_estimator_config.{field}" in message and "pes" in message
